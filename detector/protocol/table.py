"""The protocol's table: every clip of ``../shared/data`` (and made fakes) measured window by window
through the evidence streams, cached as JSONL so a run resumes and a later fit reads it in seconds.

Rows come from ``index.csv`` (label, identity, method, family) and, optionally, from the made-fakes
log of ``detector.data.clipfakes`` (their identity is the real clip's). Clip fakes of the cheap kinds
are training aids (``role`` "aid"): always trained on within their identity's folds, never tested;
sfumato's own fakes are a method like any other tool's.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from detector.data.windows import WindowConfig
from generator.errors import BadInputError
from generator.io.files import sha256_file

EVAL, AID = "eval", "aid"
SFUMATO = "sfumato"


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """One clip to measure and what it is."""

    path: str
    label: int  # 1 fake, 0 real
    identity: str
    method: str  # "real" for real clips
    family: str  # "" for real clips
    role: str = EVAL  # eval: tested in the protocol; aid: training only


@dataclasses.dataclass
class ClipRow:
    """A measured clip: its spec, its windows' features and the conditions the calibration buckets read."""

    spec: ClipSpec
    sha256: str
    windows: list[dict[str, float]]  # per window: ``stream:feature`` -> value (NaN: not measured)
    face_px: float  # median face size over the windows, pixels of the file
    bits_per_pixel: float
    seconds: float

    def to_dict(self) -> dict:
        """JSON-ready (NaN -> None)."""
        def clean(d):
            return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in d.items()}

        return {"spec": dataclasses.asdict(self.spec), "sha256": self.sha256,
                "windows": [clean(w) for w in self.windows],
                **clean({"face_px": self.face_px, "bits_per_pixel": self.bits_per_pixel,
                         "seconds": self.seconds})}

    @classmethod
    def from_dict(cls, d: dict) -> ClipRow:
        """Read ``to_dict`` output."""
        def nan(v):
            return float("nan") if v is None else float(v)

        return cls(ClipSpec(**d["spec"]), d["sha256"],
                   [{k: nan(v) for k, v in w.items()} for w in d["windows"]],
                   nan(d["face_px"]), nan(d["bits_per_pixel"]), nan(d["seconds"]))


def shared_specs(data_dir: str | os.PathLike) -> list[ClipSpec]:
    """The real and fake videos listed in ``data_dir/index.csv`` (portraits are left out)."""
    root = Path(data_dir)
    index = root / "index.csv"
    if not index.is_file():
        raise BadInputError(f"{index} not found: point at the folder that holds index.csv (../shared/data)")
    out = []
    with index.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["label"] not in ("real", "fake"):
                continue
            out.append(ClipSpec(str(root / r["path"]), int(r["label"] == "fake"), r["identity"], r["method"],
                                r.get("family", "") or ""))
    return out


def made_fake_specs(made_log: str | os.PathLike, files_dir: str | os.PathLike | None = None
                    ) -> list[ClipSpec]:
    """The clip fakes a ``make_clip_fakes`` run logged (one JSON object a line with path, kind, identity)."""
    out = []
    for line in Path(made_log).read_text().splitlines():
        m = json.loads(line)
        if "kind" not in m:
            continue  # a clip that failed
        path = Path(files_dir) / Path(m["path"]).name if files_dir else Path(m["path"])
        sfumato = m["kind"] == SFUMATO
        out.append(ClipSpec(str(path), 1, m["identity"], SFUMATO if sfumato else f"self_{m['kind']}",
                            "one-image-animation" if sfumato else "self-made", EVAL if sfumato else AID))
    return list({s.path: s for s in out}.values())


def config_digest(config: WindowConfig, detector_sha256: str) -> str:
    """What a cached row depends on besides the file: window settings and the frame classifier."""
    text = json.dumps({"windows": dataclasses.asdict(config), "detector": detector_sha256}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def measure_table(specs: list[ClipSpec], cache: str | os.PathLike,
                  detector_path: str | os.PathLike | None = None,
                  config: WindowConfig = WindowConfig(), progress: bool = False) -> list[ClipRow]:
    """Measure every clip (frames and dynamics streams) into ``cache`` (JSONL, appended, resumable)."""
    from tqdm import tqdm

    from detector.evidence.clip import measure_windows
    from detector.evidence.streams import create_stream
    from detector.model import load_detector
    from detector.scan import BUNDLED_DETECTOR
    from generator.faces.backends import create_backend
    from generator.io.video import MediaReader

    detector_path = Path(detector_path or BUNDLED_DETECTOR)
    model, _ = load_detector(detector_path)
    digest = config_digest(config, sha256_file(detector_path))
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    store = cache / f"table-{digest}.jsonl"
    done = {}
    if store.is_file():
        for line in store.read_text().splitlines():
            try:
                row = ClipRow.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill: measured again
            done[(row.spec.path, row.sha256)] = row
    streams = [create_stream("frames"), create_stream("dynamics")]
    backend = create_backend("dlib")
    rows = []
    with store.open("a") as log:
        for spec in tqdm(specs, desc="measure", unit="clip", disable=not progress):
            sha = sha256_file(spec.path)
            if (spec.path, sha) in done:
                rows.append(dataclasses.replace(done[(spec.path, sha)], spec=spec))
                continue
            with MediaReader(spec.path) as reader:
                info = reader.info
                wins, _ = measure_windows(reader, streams, backend, model, None, config)
            sizes = [w.face_px for w in wins if np.isfinite(w.face_px)]
            face_px = float(np.median(sizes)) if sizes else np.nan
            row = ClipRow(spec, sha, [w.features() for w in wins], face_px,
                          info.bits_per_pixel, info.duration)
            log.write(json.dumps(row.to_dict()) + "\n")
            log.flush()
            rows.append(row)
    return rows


def recompressed_specs(specs: list[ClipSpec], out_dir: str | os.PathLike, crf: int, seconds: float = 4.0
                       ) -> list[ClipSpec]:
    """Copies of the clips' first ``seconds`` re-encoded at H.264 ``crf`` (c23 = 23, c40 = 40) into
    ``out_dir`` (kept when already there), for in-domain tables at one compression level."""
    from generator.io.encode import write_video
    from generator.io.video import MediaReader

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for s in specs:
        target = out / f"{Path(s.path).stem}__c{crf}.mp4"
        if not target.is_file():
            with MediaReader(s.path) as reader:
                n = max(2, int(round(seconds * (reader.info.fps or 25.0))))
                frames = [f for i, f in reader.frames() if i < n]
                fps = reader.info.fps or 25.0
            write_video(target, frames, fps, crf=crf)
        made.append(dataclasses.replace(s, path=str(target)))
    return made

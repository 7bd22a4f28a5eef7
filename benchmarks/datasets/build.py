"""``sfumato dataset build``: an adversarial real/fake benchmark dataset from a prepared corpus.

The plan (a pure function of the corpus, the checkpoint and the settings):

- identities split train / val / test (seeded, 72/14/14 by default, as FaceForensics++), never
  one identity in two splits;
- per identity, ``clips_per_identity`` segments of ``clip_frames`` frames of its videos: each is a
  **real** clip, and the target of ``fakes_per_real`` fakes drawn round-robin from the grid
  method (self / cross reenactment) x shots T x mode (FF / FT). A fake keeps the target's frames,
  background and head pose and replaces its face (a convex-hull mask, feathered) by G's rendering
  of the target identity making the driver's expressions: the target's own (self) or those of
  another identity of the same split (cross). Real and fake thus match in people, length and
  quality;
- every clip at c0 / c23 / c40 (H.264 CRF 0 / 23 / 40); every fake C2PA-signed, with a
  manifest-free copy beside it (``path``: what detectors read; the signed one is ``signed_path``);
- r, the discriminator's identity-agnostic realism score, per frame of every file.

Layout of ``OUT``::

    build.json                  settings, corpus and checkpoint hashes, the split, the whole plan
    videos/<clip_id>/c0.mp4 ... manifest-free files; fakes also c0.signed.mp4 ...; track.npz (crop
                                matrices + landmarks per frame, to score derived files again)
    records/<clip_id>.json      a finished (or skipped, with the reason) clip: its metadata rows
    metadata.jsonl / .csv, splits.json, realism_hist.png, README.md (the dataset card)

Each clip is made in ``OUT/.tmp`` and renamed into place, then its record is written: a killed build
rerun with the same arguments keeps every finished clip (its rows byte-identical) and makes the
rest. ``shard=(i, n)`` makes only the clips of every n-th target identity (torchrun: from RANK /
WORLD_SIZE); ``merge_shards`` (or rank 0 under torchrun) writes the metadata and card once all are in.
Everything is derived from the seed and the clip id, so shards, reruns and one-process runs agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.datasets.clips import make_clip
from benchmarks.datasets.hard import FILTER_FILE, DetectorJudge, stored_threshold
from benchmarks.datasets.plan import BuildConfig, ClipPlan, in_shard, make_plan
from benchmarks.datasets.render import ClipMaker, FileRealismScorer
from detector.data.schema import ClipRecord, write_metadata
from generator.errors import BadInputError, ConfigMismatchError, SfumatoError
from generator.io.files import link_or_copy, sha256_file, write_bytes_atomic

if TYPE_CHECKING:  # the corpus package imports torch: keep `dataset --help` light
    from generator.corpus.reader import Corpus

BUILD_FILE = "build.json"
FORMAT = 1


@dataclasses.dataclass(frozen=True)
class DatasetResult:
    """A finished dataset (``finish_dataset``, ``merge_shards``): rows, clips, what was skipped, the card."""

    rows: int
    clips: int
    skipped_clips: list[dict]
    filtered_clips: list[dict]
    skipped_identities: list[dict]
    card: str  # README.md
    histogram: str
    realism_auc: dict[str, float | None]  # per compression: clip AUC of r alone
    filter: dict | None = None  # the hard-example filter's summary, when fakes were chosen

    def to_dict(self) -> dict:
        """The summary as JSON-ready dict (``--json``); ``filter`` only when there is one."""
        d = dataclasses.asdict(self)
        if self.filter is None:
            del d["filter"]
        return d


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """What one ``build_dataset`` call did (``build_summary*.json``), and the dataset once finished."""

    out: str
    shard: tuple[int, int] | None
    clips_planned: int
    clips_in_shard: int
    made: int
    skipped_now: int
    filtered_now: int
    reused: int
    seconds: float
    stage_seconds: dict[str, float]
    dataset: DatasetResult | None = None  # None: a shard, whose metadata and card come at the merge

    def to_dict(self) -> dict:
        """The summary as JSON-ready dict (``--json``, build_summary.json); ``dataset`` only when finished."""
        d = {"out": self.out, "shard": list(self.shard) if self.shard else None,
             "clips_planned": self.clips_planned, "clips_in_shard": self.clips_in_shard, "made": self.made,
             "skipped_now": self.skipped_now, "filtered_now": self.filtered_now, "reused": self.reused,
             "seconds": self.seconds, "stage_seconds": self.stage_seconds}
        if self.dataset is not None:
            d["dataset"] = self.dataset.to_dict()
        return d


def library_versions() -> dict:
    """Versions of sfumato and the libraries that shape a build's output, for its metadata."""
    import av
    import torch

    from generator import __version__

    out = {"sfumato": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
           "numpy": np.__version__, "av": av.__version__}
    try:
        from importlib.metadata import version

        out["c2pa-python"] = version("c2pa-python")
    except Exception:  # not installed as a distribution: leave it out
        pass
    return out


# -- the build -------------------------------------------------------------------------------
def _digest(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def build_document(corpus: str | os.PathLike, checkpoint: str | os.PathLike, config: BuildConfig,
                   videos: Corpus | None = None) -> dict:
    """Everything that determines the dataset: settings, input hashes, split and plan (+ digest).

    ``videos``: the opened ``Corpus``, when the caller has read it already.
    """
    from generator.corpus.reader import Corpus

    videos = videos if videos is not None else Corpus.open(corpus)
    clips, split, skipped = make_plan(videos, config)
    doc = {"format": FORMAT, "config": config.to_doc(),
           "corpus_videos": [{"dir": v.dir, "identity": v.identity, "frame_count": v.frame_count,
                              "source_sha256": v.source_sha256} for v in videos],
           "checkpoint_sha256": sha256_file(checkpoint), "splits": split, "skipped_identities": skipped,
           "plan": [c.to_dict() for c in clips]}
    return {**doc, "digest": _digest(doc)}


def read_build(out: str | os.PathLike) -> dict:
    """A dataset folder's build.json (clear error when absent)."""
    path = Path(out) / BUILD_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise BadInputError(f"{out}: no readable {BUILD_FILE}: not a folder made by `sfumato dataset "
                            "build`") from None


def _read_record(out: Path, clip_id: str) -> dict | None:
    try:
        rec = json.loads((out / "records" / f"{clip_id}.json").read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("status") in ("done", "skipped", "filtered") else None


def build_dataset(corpus: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike,
                  config: BuildConfig = BuildConfig(), shard: tuple[int, int] | None = None,
                  signing=None, command: str | None = None, progress: bool = False,
                  on_clip: Callable[[str], None] | None = None, device: str = "cpu",
                  hard_for: str | os.PathLike | None = None) -> BuildResult:
    """Build (or finish) the dataset in ``out``; see the module docstring. Returns what it did.

    With ``shard`` only that shard's clips are made; the metadata and card are written by
    ``merge_shards`` (under torchrun, rank 0 waits for the others and writes them). ``device``
    "cuda" renders, fine-tunes and scores on the GPU (under torchrun: the rank's local GPU).
    ``hard_for``: the detector file whose sha256 is ``config.hard_for_sha256`` (the judge of
    candidates; see ``choose_candidate``).
    """
    from tqdm import tqdm

    from generator.provenance.manifest import SigningOptions

    t_start = time.perf_counter()
    out = Path(out)
    corpus, checkpoint = Path(corpus), Path(checkpoint)
    if not checkpoint.is_file():
        raise BadInputError(f"checkpoint {checkpoint} not found")
    if (hard_for is None) != (config.hard_for_sha256 is None):
        raise BadInputError("--hard-for needs the detector file and its sha256 in the settings together")
    if hard_for is not None and sha256_file(hard_for) != config.hard_for_sha256:
        raise ConfigMismatchError(f"{hard_for} is not the detector these settings name (sha256 "
                                  f"{config.hard_for_sha256[:12]}...)")
    from generator.corpus.reader import Corpus

    videos = Corpus.open(corpus)
    doc = build_document(corpus, checkpoint, config, videos)
    out.mkdir(parents=True, exist_ok=True)
    old = (out / BUILD_FILE).exists() and read_build(out)
    if old and old.get("digest") != doc["digest"]:
        raise ConfigMismatchError(
            f"{out} holds a dataset built with other settings, corpus or checkpoint "
            f"({_what_differs(old, doc)}): rerun with the original arguments to finish it, or choose "
            "a new --out")
    write_bytes_atomic(out / BUILD_FILE, json.dumps(
        {**doc, "corpus": str(corpus.resolve()), "checkpoint": str(checkpoint.resolve()),
         "command": command, "versions": library_versions()}, indent=1).encode())
    clips = [ClipPlan.from_dict(c) for c in doc["plan"]]
    identities = sorted(doc["splits"])
    mine = [c for c in clips if shard is None or in_shard(c, identities, shard)]
    todo = [c for c in mine if _read_record(out, c.clip_id) is None]
    maker = None
    done = skipped = filtered = 0
    if todo:
        if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        maker = ClipMaker(videos, checkpoint, doc["checkpoint_sha256"], config,
                          signing or SigningOptions(), device)
        (out / "records").mkdir(exist_ok=True)
        threshold = stored_threshold(out, doc, maker, clips) if config.filtering else None
        judge = DetectorJudge(hard_for, maker.model.D.w_0.device) if hard_for is not None else None
        for clip in tqdm(todo, desc="dataset build", unit="clip", disable=not progress):
            rec = make_clip(maker, clip, out, threshold, judge)
            write_bytes_atomic(out / "records" / f"{clip.clip_id}.json", json.dumps(rec, indent=1).encode())
            done += rec["status"] == "done"
            skipped += rec["status"] == "skipped"
            filtered += rec["status"] == "filtered"
            if on_clip is not None:
                on_clip(clip.clip_id)
    seconds = {k: round(v, 3) for k, v in (maker.seconds if maker else {}).items()}
    result = BuildResult(out=str(out), shard=tuple(shard) if shard else None, clips_planned=len(clips),
                         clips_in_shard=len(mine), made=done, skipped_now=skipped, filtered_now=filtered,
                         reused=len(mine) - len(todo), seconds=round(time.perf_counter() - t_start, 3),
                         stage_seconds=seconds)
    name = "build_summary.json" if shard is None else f"build_summary.shard{shard[0]}of{shard[1]}.json"
    write_bytes_atomic(out / name, json.dumps(result.to_dict(), indent=1).encode())
    if shard is None:
        result = dataclasses.replace(result, dataset=finish_dataset(out))
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1 and shard[0] == 0:
        result = dataclasses.replace(result, dataset=finish_dataset(out, wait=True))
    return result


def _what_differs(old: dict, new: dict) -> str:
    parts = [k for k in ("config", "corpus_videos", "checkpoint_sha256") if old.get(k) != new.get(k)]
    return "different " + ", ".join(parts) if parts else "different plan"


def finish_dataset(out: str | os.PathLike, wait: bool = False, poll_seconds: float = 2.0) -> DatasetResult:
    """Write metadata.jsonl/.csv, splits.json and the card once every planned clip has a record.

    ``wait``: poll until the other shards' records are in (torchrun rank 0).
    """
    from benchmarks.datasets.card import write_card

    out = Path(out)
    doc = read_build(out)
    ids = [c["clip_id"] for c in doc["plan"]]
    while True:
        records = {i: _read_record(out, i) for i in ids}
        missing = [i for i, r in records.items() if r is None]
        if not missing or not wait:
            break
        time.sleep(poll_seconds)
    if missing:
        raise SfumatoError(f"{len(missing)} of {len(ids)} planned clips are not built yet in {out} "
                           f"(e.g. {', '.join(missing[:3])}): run the remaining shards, then merge")
    rows = [ClipRecord.from_dict(r) for rec in records.values() if rec["status"] == "done"
            for r in rec["rows"]]
    lost = [r.path for r in rows if not (out / r.path).is_file()]
    if lost:
        raise SfumatoError(f"{len(lost)} clip files recorded as built are missing from {out} (e.g. "
                           f"{lost[0]}): delete their records/ entries and rerun the build")
    skips = [{"clip_id": i, "reason": r["reason"]} for i, r in records.items() if r["status"] == "skipped"]
    dropped = [{"clip_id": i, "reason": r["reason"]} for i, r in records.items() if r["status"] == "filtered"]
    selections = {i: r["selection"] for i, r in records.items() if r.get("selection")}
    write_metadata(out, rows)
    splits = {"identities": doc["splits"],
              "counts": {s: sorted(i for i, v in doc["splits"].items() if v == s)
                         for s in ("train", "val", "test")},
              "skipped_identities": doc["skipped_identities"], "skipped_clips": skips,
              "filtered_clips": dropped}
    write_bytes_atomic(out / "splits.json", json.dumps(splits, indent=1).encode())
    threshold = None
    if selections:
        try:
            threshold = json.loads((out / FILTER_FILE).read_text()).get("threshold")
        except (OSError, ValueError):
            pass
    card = write_card(out, doc, rows, skips, selections, threshold)
    return DatasetResult(rows=len(rows), clips=len(ids) - len(skips) - len(dropped), skipped_clips=skips,
                         filtered_clips=dropped, skipped_identities=doc["skipped_identities"], **card)


def merge_shards(out: str | os.PathLike, shard_dirs: list[str | os.PathLike] = ()) -> DatasetResult:
    """Bring shards built into other folders into ``out`` (same build only), then finish it."""
    out = Path(out)
    mine = read_build(out)
    for d in map(Path, shard_dirs):
        if d.resolve() == out.resolve():
            continue
        other = read_build(d)
        if other.get("digest") != mine.get("digest"):
            raise ConfigMismatchError(f"stale shard: {d} was built with other settings, corpus or "
                                      f"checkpoint than {out} ({_what_differs(other, mine)})")
        if not (out / FILTER_FILE).exists() and (d / FILTER_FILE).is_file():
            write_bytes_atomic(out / FILTER_FILE, (d / FILTER_FILE).read_bytes())
        plan = {c["clip_id"] for c in mine["plan"]}
        for rec_path in sorted((d / "records").glob("*.json")):
            clip_id = rec_path.stem
            if clip_id not in plan:
                raise ConfigMismatchError(f"stale shard: {d} holds clip {clip_id}, which {out}'s plan "
                                          "does not have")
            if _read_record(out, clip_id) is not None or _read_record(d, clip_id) is None:
                continue
            if (d / "videos" / clip_id).is_dir():
                dst = out / "videos" / clip_id
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(d / "videos" / clip_id, out / ".tmp" / clip_id, dirs_exist_ok=True,
                                copy_function=link_or_copy)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(out / ".tmp" / clip_id, dst)
            (out / "records").mkdir(exist_ok=True)
            write_bytes_atomic(out / "records" / rec_path.name, rec_path.read_bytes())
    return finish_dataset(out)


def dataset_rescorer(dataset: str | os.PathLike, checkpoint: str | os.PathLike
                     ) -> Callable[[Path, ClipRecord], np.ndarray]:
    """A ``rescore(file, parent_row)`` for derived files of a built dataset (e.g. perturbed copies):
    r per frame with the dataset's own checkpoint and each clip's stored crops and landmarks."""
    from generator.model.talking_head import load_meta_model

    doc = read_build(dataset)
    if sha256_file(checkpoint) != doc["checkpoint_sha256"]:
        raise ConfigMismatchError(f"{checkpoint} is not the checkpoint {dataset} was built with (sha256 "
                                  f"{doc['checkpoint_sha256'][:12]}...): its r would not be comparable")
    scorer = FileRealismScorer(load_meta_model(checkpoint)[0])

    def rescore(path: Path, row: ClipRecord) -> np.ndarray:
        with np.load(Path(dataset) / "videos" / row.clip_id / "track.npz") as z:
            return scorer(path, z["crop_matrices"], z["points"], z["face_found"], (row.height, row.width))

    return rescore

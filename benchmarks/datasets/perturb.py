"""Robustness perturbations of sfumato datasets: the DeeperForensics-1.0 distortions at five levels
each, plus a true JPEG re-encode and a resize (detection.md, "Robustness protocol").

``perturb_frame`` distorts one RGB frame; ``perturb_dataset`` applies one perturbation (or a seeded
random mix of them) to every clip of a dataset at one compression and writes a new dataset beside it:
the videos, metadata rows that point back to their parents (``parent_id``), a dataset card and a
``perturb.json`` summary. Every random draw comes from a generator seeded by the run seed and a stable
hash of the clip id, so a rerun, in any order, gives the same files; finished clips are reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from detector.data.degrade import jpeg_roundtrip
from detector.data.schema import ClipRecord, read_metadata, realism_list, realism_summary, write_metadata
from generator.errors import BadInputError, ConfigMismatchError, SfumatoError
from generator.io.files import sha256_file, write_bytes_atomic
from generator.io.video import MediaReader, VideoWriter, probe

LEVELS = (1, 2, 3, 4, 5)
SUMMARY_JSON = "perturb.json"
GREY = 128  # value of the occluding blocks (BW)


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """One perturbation of the protocol: what it does and its parameter at levels 1..5."""

    name: str
    description: str
    levels: tuple[float, ...]  # the parameter at levels 1..5 (index level - 1)


PERTURBATIONS: dict[str, Perturbation] = {
    "CS": Perturbation("colour saturation", "HSV saturation multiplied by the factor (0: grey)",
                       (0.4, 0.3, 0.2, 0.1, 0.0)),
    "CC": Perturbation("colour contrast", "grey mean + factor * (pixel - grey mean)",
                       (0.85, 0.725, 0.6, 0.475, 0.35)),
    "BW": Perturbation("block-wise occlusion",
                       "this many grey (128) square blocks at random places, side 8 px per 256 px of the "
                       "short side", (16, 32, 48, 64, 80)),
    "GNC": Perturbation("Gaussian noise (colour)", "noise of this variance (0..1 scale) added in YCbCr",
                        (0.001, 0.002, 0.005, 0.01, 0.05)),
    "GB": Perturbation("Gaussian blur", "kernel size k, sigma = k / 6", (7, 9, 13, 17, 21)),
    "PX": Perturbation("pixelation", "down-scaled by the factor (area), up-scaled back (nearest); "
                       "DeeperForensics calls it JPEG", (2, 3, 4, 5, 6)),
    "VC": Perturbation("video compression", "H.264 constant rate factor of the clip (frames untouched)",
                       (30, 32, 35, 38, 40)),
    "JPEG": Perturbation("JPEG re-encode", "every frame JPEG-encoded at this quality and decoded",
                         (90, 75, 60, 45, 30)),
    "RS": Perturbation("resize", "down-scaled by the factor (area), sides rounded to even, kept small",
                       (0.9, 0.75, 0.6, 0.5, 0.4)),
}
# The random mix draws from DeeperForensics' own seven (its "mixed" distortions); JPEG and RS are
# sfumato's additions and stay single-perturbation tests.
MIX_CODES = ("CS", "CC", "BW", "GNC", "GB", "PX", "VC")


# -- one frame ---------------------------------------------------------------------------------
def _check(code: str, level: int) -> str:
    """The upper-case code, or a clear error naming the valid codes / levels."""
    if not isinstance(code, str) or code.upper() not in PERTURBATIONS:
        raise BadInputError(f"unknown perturbation {code!r}; valid codes: {', '.join(PERTURBATIONS)}")
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level not in LEVELS:
        raise BadInputError(f"perturbation level must be an integer in 1..5, got {level!r}")
    return code.upper()


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _saturation(frame: np.ndarray, factor: float) -> np.ndarray:
    # Float HSV (S in 0..1) so small factors are not quantised away and S = 0 gives R = G = B exactly.
    hsv = cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 1] *= factor
    return _to_uint8(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0)


def _contrast(frame: np.ndarray, factor: float) -> np.ndarray:
    # One grey mean for all channels keeps the hue: a per-channel mean would shift the colour balance.
    mean = float(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).mean())
    return _to_uint8(mean + factor * (frame.astype(np.float32) - mean))


def _blocks(frame: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    h, w = frame.shape[:2]
    side = min(max(8, round(min(h, w) / 32)), h, w)  # 8 px at 256 px, scaled with the short side
    # Uniform floats drawn as one (count, 2) array: with the same generator state the first blocks of
    # a higher level are those of the lower ones, so more blocks always cover at least as much.
    pos = rng.random((count, 2)) * np.array([h - side + 1, w - side + 1])
    out = frame.copy()
    for y, x in pos.astype(np.int64):
        out[y:y + side, x:x + side] = GREY
    return out


def _noise(frame: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    ycc = cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_RGB2YCrCb)
    ycc += rng.standard_normal(ycc.shape, dtype=np.float32) * np.float32(np.sqrt(variance))
    return _to_uint8(np.clip(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB), 0.0, 1.0) * 255.0)


def _blur(frame: np.ndarray, kernel: int) -> np.ndarray:
    k = int(kernel)
    return cv2.GaussianBlur(frame, (k, k), k / 6.0)


def _pixelate(frame: np.ndarray, factor: int) -> np.ndarray:
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (max(1, w // int(factor)), max(1, h // int(factor))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def resized_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """(height, width) after RS by ``factor``: each side rounded to an even number >= 2 (yuv420p)."""
    return (max(2, 2 * round(height * factor / 2)), max(2, 2 * round(width * factor / 2)))


def _resize(frame: np.ndarray, factor: float) -> np.ndarray:
    h, w = resized_size(*frame.shape[:2], factor)
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


def perturb_frame(frame: np.ndarray, code: str, level: int, rng: np.random.Generator) -> np.ndarray:
    """``frame`` (RGB uint8 HxWx3) with perturbation ``code`` at ``level`` 1..5 (VC: unchanged)."""
    code = _check(code, level)
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise BadInputError(f"frames must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    v = PERTURBATIONS[code].levels[level - 1]
    if code == "CS":
        return _saturation(frame, v)
    if code == "CC":
        return _contrast(frame, v)
    if code == "BW":
        return _blocks(frame, int(v), rng)
    if code == "GNC":
        return _noise(frame, v, rng)
    if code == "GB":
        return _blur(frame, int(v))
    if code == "PX":
        return _pixelate(frame, int(v))
    if code == "JPEG":
        return jpeg_roundtrip(frame, int(v))
    if code == "RS":
        return _resize(frame, v)
    return frame  # VC acts on the encode (its CRF), not on the pixels


# -- choices, labels, seeds ---------------------------------------------------------------------
def clip_hash(clip_id: str) -> int:
    """A stable 63-bit hash of a clip id (Python's hash() changes between runs)."""
    return int.from_bytes(hashlib.sha256(clip_id.encode()).digest()[:8], "big") >> 1


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BadInputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def clip_rng(seed: int, clip_id: str) -> np.random.Generator:
    """The generator of one clip's per-frame random draws (BW positions, GNC noise)."""
    return np.random.default_rng([_check_seed(seed), clip_hash(clip_id)])


def mix_choice(seed: int, clip_id: str, count: int = 2) -> list[tuple[str, int]]:
    """The random mix of one clip: ``count`` distinct codes with random levels, in table order."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) \
            or not 1 <= count <= len(MIX_CODES):
        raise BadInputError(f"mix count must be an integer in 1..{len(MIX_CODES)}, got {count!r}")
    # A third seed word keeps this stream apart from the clip's frame draws (clip_rng).
    rng = np.random.default_rng([_check_seed(seed), clip_hash(clip_id), 1])
    picked = rng.choice(len(MIX_CODES), size=int(count), replace=False)
    levels = rng.integers(1, 6, size=int(count))
    # Table order fixes the order they are applied in and makes the label canonical.
    return sorted(((MIX_CODES[i], int(lv)) for i, lv in zip(picked, levels)),
                  key=lambda c: list(PERTURBATIONS).index(c[0]))


def perturbation_label(choices: Sequence[tuple[str, int]]) -> str:
    """The metadata label: "GB:3" for one perturbation, "mix:CS:1+GB:4" for several."""
    if not choices:
        raise BadInputError("no perturbation given")
    parts = [f"{_check(code, level)}:{int(level)}" for code, level in choices]
    return parts[0] if len(parts) == 1 else "mix:" + "+".join(parts)


def parse_perturbation_label(label: str) -> list[tuple[str, int]]:
    """The (code, level) pairs of a label ("none" -> [])."""
    if label == "none":
        return []
    body = label[4:] if label.startswith("mix:") else label
    out = []
    for part in body.split("+"):
        code, _, level = part.partition(":")
        if not level.isdigit():
            raise BadInputError(f"not a perturbation label: {label!r} (expected e.g. GB:3 or mix:CS:1+GB:4)")
        out.append((_check(code, int(level)), int(level)))
    return out


def compression_name(crf: int) -> str:
    """FaceForensics++ name of an H.264 CRF (c0 / c23 / c40), else "crf<N>"."""
    return {0: "c0", 23: "c23", 40: "c40"}.get(int(crf), f"crf{int(crf)}")


def perturbed_id(clip_id: str, choices: Sequence[tuple[str, int]], crf: int) -> str:
    """Row id of a perturbed clip, e.g. "<clip_id>_c23_GB3" or "<clip_id>_c23_mix-CS1-GB4"."""
    tag = "-".join(f"{c}{lv}" for c, lv in choices)
    return f"{clip_id}_{compression_name(crf)}_{'mix-' + tag if len(choices) > 1 else tag}"


def _encode_crf(choices: Sequence[tuple[str, int]], crf: int) -> int:
    """The CRF a clip is encoded at: VC's level when VC is among the choices, else ``crf``."""
    for code, level in choices:
        if code == "VC":
            return int(PERTURBATIONS["VC"].levels[level - 1])
    return int(crf)


# -- a dataset ----------------------------------------------------------------------------------
def _relpath(target: Path, start: Path) -> str:
    try:
        return os.path.relpath(target, start)
    except ValueError:  # another drive (Windows): no relative path exists
        return str(target)


def _perturb_clip(src: Path, dst: Path, choices: Sequence[tuple[str, int]], crf: int, fps: float,
                  rng: np.random.Generator) -> str | None:
    """Decode ``src``, perturb every frame, encode ``dst`` atomically; return the reader's warning."""
    with MediaReader(src) as reader:
        rate = fps if fps > 0 else (reader.info.fps or 25.0)
        with VideoWriter(dst, fps=rate, crf=crf, reproducible=True) as writer:
            for _, rgb in reader.frames():
                for code, level in choices:
                    rgb = perturb_frame(rgb, code, level, rng)
                writer.write(rgb)
            if writer.frame_count == 0:
                raise BadInputError(f"{src}: no readable frames")
        return reader.warning


def _new_row(row: ClipRecord, choices: Sequence[tuple[str, int]], crf: int, rel: str) -> ClipRecord:
    """The perturbed row before its file exists (file-derived fields are filled in later)."""
    return dataclasses.replace(
        row, id=perturbed_id(row.clip_id, choices, crf), compression=compression_name(crf), crf=crf,
        perturbation=perturbation_label(choices), path=rel, sha256="", manifest="Absent",
        signed_path=None, signed_sha256=None, signed_manifest=None, parent_id=row.id,
        realism_mean=None, realism_std=None, realism_min=None, realism_median=None, realism_max=None,
        realism=None)


# Fields of a row that come from its file (or the rescore), not from the parent and the arguments.
_FILE_FIELDS = ("sha256", "frames", "width", "height", "fps", "realism_mean", "realism_std", "realism_min",
                "realism_median", "realism_max", "realism")


def _reusable(record_path: Path, expected: ClipRecord, out: Path) -> ClipRecord | None:
    """A finished clip's stored row, if it matches ``expected`` and its video is intact."""
    try:
        stored = ClipRecord.from_dict(json.loads(record_path.read_text()))
    except (OSError, ValueError, TypeError, SfumatoError):
        return None
    a, b = stored.to_dict(), expected.to_dict()
    if any(a[k] != b[k] for k in a if k not in _FILE_FIELDS):
        return None  # the parent row changed since: redo the clip
    video = out / stored.path
    if not video.is_file() or sha256_file(video) != stored.sha256:
        return None
    return stored


def _arguments(dataset: Path, out: Path, code: str, level: int | None, count: int | None, seed: int,
               source_compression: str, crf: int | None, rescored: bool) -> dict:
    return {"parent": _relpath(dataset, out), "code": code, "level": level, "count": count, "seed": seed,
            "source_compression": source_compression, "crf": crf, "rescored": rescored}


def _check_arguments(out: Path, args: dict) -> None:
    """Raise ConfigMismatchError if ``out`` was made with other arguments than ``args``."""
    path = out / SUMMARY_JSON
    if not path.is_file():
        return
    try:
        previous = json.loads(path.read_text())["arguments"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigMismatchError(f"{path}: unreadable, so {out} cannot be resumed safely; remove the "
                                  "folder or choose another output folder") from None
    diff = [f"{k}: {previous.get(k)!r} there, {v!r} now" for k, v in args.items() if previous.get(k) != v]
    if diff:
        raise ConfigMismatchError(f"{out} was made with other settings ({'; '.join(diff)}); choose another "
                                  "output folder or rerun with the same arguments")


def _table_order(item: tuple[tuple[str, int], int]) -> tuple[int, int]:
    (code, level), _ = item
    return list(PERTURBATIONS).index(code), level


def _card(out: Path, args: dict, applied: Counter, rows: list[ClipRecord], failed: list[dict],
          crf_counts: Counter) -> str:
    """The dataset card (README.md) of a perturbed dataset."""
    mix = args["code"] == "mix"
    title = (f"mix of {args['count']} random perturbations (seed {args['seed']})" if mix
             else f"{args['code']} level {args['level']}")
    lines = [f"# Perturbed dataset: {title}", "",
             f"Made by `benchmarks.datasets.perturb.perturb_dataset` from the parent dataset "
             f"`{args['parent']}` "
             f"(relative to this folder): every clip at compression `{args['source_compression']}` with no "
             "perturbation, decoded, perturbed frame by frame and re-encoded with H.264. Each row of "
             "`metadata.jsonl` / `metadata.csv` names its parent row in `parent_id`; C2PA manifests are "
             "not carried over (`manifest` = Absent).", "",
             "## Arguments", "", "| argument | value |", "|---|---|"]
    lines += [f"| {k} | {'' if v is None else v} |" for k, v in args.items()]
    lines += ["", "## What was applied", "",
              "| code | perturbation | level | value | clips |", "|---|---|---|---|---|"]
    for (code, level), n in sorted(applied.items(), key=_table_order):
        p = PERTURBATIONS[code]
        lines.append(f"| {code} | {p.name}: {p.description} | {level} | {p.levels[level - 1]} | {n} |")
    if mix:
        lines += ["", f"Each clip draws {args['count']} distinct codes from {', '.join(MIX_CODES)} with "
                  "random levels (seeded by the seed and the clip id), applied in table order."]
    lines += ["", "Encoded at CRF: " + (", ".join(f"{c} ({compression_name(c)}): {n} clips"
                                                    for c, n in sorted(crf_counts.items())) or "none"),
              "", "## Clips", "", "| split | real | fake | total |", "|---|---|---|---|"]
    by = Counter((r.split, r.label) for r in rows)
    for split in sorted({r.split for r in rows}):
        lines.append(f"| {split} | {by[(split, 'real')]} | {by[(split, 'fake')]} | "
                     f"{sum(n for (s, _), n in by.items() if s == split)} |")
    lines.append(f"| all | {sum(r.label == 'real' for r in rows)} | {sum(r.label == 'fake' for r in rows)} "
                 f"| {len(rows)} |")
    lines += ["", "## Failed clips", ""]
    lines += [f"- `{f['id']}` ({f['path']}): {f['error']}" for f in failed] or ["None."]
    return "\n".join(lines) + "\n"


def perturb_dataset(dataset: str | os.PathLike, out: str | os.PathLike | None = None, code: str = "GB",
                    level: int = 3, *, count: int = 2, seed: int = 0, source_compression: str = "c0",
                    crf: int = 23, rescore: Callable[[Path, ClipRecord], np.ndarray] | None = None,
                    progress: bool = False) -> dict:
    """Perturb every unperturbed ``source_compression`` clip of ``dataset`` into a new dataset ``out``.

    ``code="mix"`` gives each clip ``count`` random perturbations (``mix_choice``). Clips are encoded
    at ``crf`` (VC: at its level's CRF). ``rescore(file, parent_row)`` returns per-frame realism r;
    without it the realism fields are None. Finished clips are reused on a rerun with the same
    arguments; another run's folder raises ConfigMismatchError. Returns the perturb.json summary.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    dataset = Path(dataset)
    mix = isinstance(code, str) and code.lower() == "mix"
    seed = _check_seed(seed)
    if mix:
        mix_choice(seed, "", count)  # validates count early
        code, level_arg, count_arg = "mix", None, int(count)
    else:
        code, level_arg, count_arg = _check(code, level), int(level), None
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise BadInputError(f"CRF must be an integer in 0..51, got {crf!r}")
    if out is None:
        out = dataset / "perturbed" / (f"mix_{count}_seed{seed}" if mix else f"{code}_{level}")
    out = Path(out)
    if out.resolve() == dataset.resolve():
        raise BadInputError(f"{out}: the output folder must not be the parent dataset itself")

    rows = _source_rows(dataset, source_compression)

    # VC fixes its own CRF, so record the CRF actually used (mixes may vary it per clip: keep the argument).
    args = _arguments(dataset, out, code, level_arg, count_arg, seed, source_compression,
                      crf if mix or code != "VC" else _encode_crf([(code, level)], crf), rescore is not None)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "records").mkdir(exist_ok=True)
    _check_arguments(out, args)
    write_bytes_atomic(out / SUMMARY_JSON, (json.dumps({"arguments": args, "status": "running"}, indent=2)
                                            + "\n").encode())

    done: list[ClipRecord] = []
    failed: list[dict] = []
    warnings: list[dict] = []
    reused = made = 0
    applied: Counter = Counter()
    crf_counts: Counter = Counter()
    for row in tqdm(sorted(rows, key=lambda r: r.id), desc=f"perturb {code}", unit="clip",
                    disable=not progress):
        choices = mix_choice(seed, row.clip_id, count) if mix else [(code, level)]
        clip_crf = _encode_crf(choices, crf)
        rel = f"videos/{row.clip_id}.mp4"
        expected = _new_row(row, choices, clip_crf, rel)
        record_path = out / "records" / f"{row.clip_id}.json"
        new = _reusable(record_path, expected, out) if record_path.is_file() else None
        if new is not None:
            reused += 1
        else:
            try:
                new, warning = _make_clip(dataset, out / rel, row, expected, choices, clip_crf, seed, rescore)
            except SfumatoError as exc:
                failed.append({"id": row.id, "clip_id": row.clip_id, "path": row.path, "error": str(exc)})
                continue
            if warning:
                warnings.append({"id": row.id, "warning": warning})
            # The record goes last: its presence says the video beside it is complete.
            write_bytes_atomic(record_path, (json.dumps(new.to_dict(), indent=1) + "\n").encode())
            made += 1
        done.append(new)
        applied.update(choices)
        crf_counts[clip_crf] += 1

    write_metadata(out, done)
    write_bytes_atomic(out / "README.md", _card(out, args, applied, done, failed, crf_counts).encode())
    summary = _summary(args, out, rows, done, made, reused, applied, crf_counts, failed, warnings,
                       round(time.perf_counter() - t0, 3))
    write_bytes_atomic(out / SUMMARY_JSON, (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def _source_rows(dataset: Path, source_compression: str) -> list[ClipRecord]:
    """The unperturbed ``source_compression`` rows of a dataset, refused when a clip id would not make a
    safe, unique file name."""
    parents = read_metadata(dataset)
    rows = [r for r in parents if r.compression == source_compression and r.perturbation == "none"]
    if not rows:
        have = sorted({r.compression for r in parents if r.perturbation == "none"})
        raise BadInputError(f"{dataset}: no unperturbed clips at compression {source_compression!r}; "
                            f"available: {', '.join(have) if have else 'none (every row is perturbed)'}")
    clip_ids = [r.clip_id for r in rows]
    dup = sorted(c for c, n in Counter(clip_ids).items() if n > 1)
    if dup:
        raise BadInputError(f"{dataset}: several {source_compression} rows share clip ids: "
                            f"{', '.join(dup[:5])}")
    bad = [c for c in clip_ids if not c or c in (".", "..") or Path(c).name != c]
    if bad:
        raise BadInputError(f"{dataset}: clip ids that are not plain file names: {', '.join(bad[:5])}")
    return rows


def _make_clip(dataset: Path, video: Path, row: ClipRecord, expected: ClipRecord,
               choices: list[tuple[str, int]], clip_crf: int, seed: int,
               rescore: Callable[[Path, ClipRecord], np.ndarray] | None) -> tuple[ClipRecord, str | None]:
    """Perturb one clip into ``video``: (its row, with the file's facts and r, and any warning)."""
    warning = _perturb_clip(row.resolve(dataset), video, choices, clip_crf, row.fps,
                            clip_rng(seed, row.clip_id))
    info = probe(video)
    new = dataclasses.replace(expected, sha256=sha256_file(video), frames=info.frame_count,
                              width=info.width, height=info.height, fps=info.fps)
    if rescore is not None:
        r = np.asarray(rescore(video, row), np.float64)
        new = dataclasses.replace(new, **realism_summary(r), realism=realism_list(r))
    return new, warning


def _summary(args: dict, out: Path, rows: list[ClipRecord], done: list[ClipRecord], made: int, reused: int,
             applied: Counter, crf_counts: Counter, failed: list[dict], warnings: list[dict],
             seconds: float) -> dict:
    """The perturb.json summary of a finished run."""
    by_split: dict[str, dict[str, int]] = {}
    for r in done:
        by_split.setdefault(r.split, {}).setdefault(r.label, 0)
        by_split[r.split][r.label] += 1
    return {
        "arguments": args, "status": "complete", "out": str(out),
        "counts": {"selected": len(rows), "done": len(done), "made": made, "reused": reused,
                   "failed": len(failed)},
        "per_split": {s: dict(sorted(v.items())) for s, v in sorted(by_split.items())},
        "applied": [{"code": c, "level": lv, "value": PERTURBATIONS[c].levels[lv - 1], "clips": n}
                    for (c, lv), n in sorted(applied.items(), key=_table_order)],
        "crf": {str(c): n for c, n in sorted(crf_counts.items())},
        "failed": failed, "warnings": warnings, "seconds": seconds,
    }

"""Exports of sfumato datasets to the formats existing tools read, and imports of labelled video
folders (e.g. a FaceForensics++ subset a user owns) into sfumato's metadata format.

``export_dataset(dataset, out, fmt)`` writes one of:

- ``deepfakebench``: DeepfakeBench's preprocessed layout, so its loaders read sfumato data without
  glue code: per video (keyed by the row's unique ``id``) ``frames/<video>/NNN.png`` aligned 256 px
  face crops (1.3 margin, the detection protocol's crop) of 32 evenly spaced frames and
  ``landmarks/<video>/NNN.npy`` (68 x 2, crop pixels), plus its dataset JSON index
  ``dataset_json/<name>.json`` = ``{name: {label_name: {split: {video: {"label", "frames"}}}}}``,
  ``label_dict.json`` and a README.md. Frames without a face are listed (``missing_frames``), never
  dropped silently; a video with no face at all is listed as failed. Each video is built in a
  temporary folder and renamed into place, so a rerun skips the finished ones.
- ``ffpp``: a FaceForensics++-like tree (``original_sequences/sfumato/{raw,c23,c40}/videos``,
  ``manipulated_sequences/<Method>/...``) of hard links (copies across file systems) and
  ``splits/{train,val,test}.json``.
- ``csv``: one flat ``index.csv`` (absolute path, 0/1 label, split, method, compression, ...).

Every export writes ``export.json`` (format, arguments, counts, failures, seconds) into ``out``.
No printing here: ``cli/`` reports the returned summary.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from detector.data.schema import COMPRESSIONS, LABELS, SPLITS, ClipRecord, read_metadata, write_metadata
from generator import __version__
from generator.corpus.prepare import slug
from generator.errors import BadInputError, ConfigMismatchError, SfumatoError
from generator.faces.backends import FaceBackend, create_backend
from generator.faces.crop import DETECTOR_CROP, CropParams, crop_face
from generator.faces.tracking import TrackerConfig, track_video
from generator.io.files import link_or_copy, sha256_file, write_bytes_atomic
from generator.io.video import VIDEO_EXTENSIONS, MediaReader, write_image

FORMATS = ("deepfakebench", "ffpp", "csv")
DATASET_NAME = "sfumato"  # DeepfakeBench dataset name and the prefix of its label names
EXPORT_SUMMARY = "export.json"
IMPORT_SUMMARY = "import.json"
STATE_DIR = ".sfumato_export"  # resume state of an export: settings, finished-video records, temp
KNOWN_COMPRESSIONS = (*COMPRESSIONS, "unknown")
FFPP_COMPRESSION = {"c0": "raw", "c23": "c23", "c40": "c40", "unknown": "unknown"}  # FF++ calls c0 raw
FFPP_METHODS = {"self": "SfumatoSelf", "cross": "SfumatoCross"}  # FF++-style CamelCase method folders
CSV_COLUMNS = ["path", "label", "label_name", "split", "method", "compression", "perturbation", "id",
               "clip_id", "frames", "fps", "sha256"]

# Path components (case-insensitive) that label an imported video.
REAL_WORDS = frozenset({"real", "original", "original_sequences", "pristine", "youtube"})
FAKE_WORDS = frozenset({"fake", "manipulated", "manipulated_sequences", "deepfake", "deepfakes",
                        "synthetic"})
COMPRESSION_WORDS = {"c0": "c0", "raw": "c0", "c23": "c23", "c40": "c40"}
# Folders that hold no method name between a label folder and the file.
LAYOUT_WORDS = frozenset({*SPLITS, *COMPRESSION_WORDS, "videos", "frames"})
# FaceForensics++ keeps per-method mask videos beside the fakes: they are not clips.
MASK_FOLDERS = frozenset({"masks", "mask"})
# FF++ fakes are named <target>_<source>. Identity swaps show the source's face on the target video;
# reenactments show the target driven by the source's expressions.
SWAP_METHODS = frozenset({"deepfakes", "faceswap", "faceshifter"})


# -- shared helpers --------------------------------------------------------------------------------
def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _unique_names(keys: list[str], names: list[str]) -> dict[str, str]:
    """Map each key to its name, suffixing names that collide with a hash of the key, so two rows
    never share a folder or file even when their slugs are equal."""
    counts = collections.Counter(n.lower() for n in names)  # case-insensitive file systems too
    return {k: (n if counts[n.lower()] == 1 else f"{n}-{_short_hash(k)}") for k, n in zip(keys, names)}


def _json_bytes(obj: object, indent: int | None = 1) -> bytes:
    return (json.dumps(obj, indent=indent, sort_keys=False) + "\n").encode()


def deepfakebench_label(record: ClipRecord) -> str:
    """The DeepfakeBench label name of a row: sfumato_real, or sfumato_<method> for fakes."""
    if record.label == "real":
        return f"{DATASET_NAME}_real"
    method = slug(record.method)
    # A fake must never share the real label name, whatever its method is called.
    return f"{DATASET_NAME}_{method}" if method.lower() != "real" else f"{DATASET_NAME}_fake"


def _unperturbed(perturbation: str | None) -> bool:
    return perturbation in ("none", "", None)


def _group_name(compression: str, perturbation: str | None) -> str:
    """The per-compression (and per-perturbation) DeepfakeBench dataset name of a row."""
    name = f"{DATASET_NAME}_{slug(compression)}"
    return name if _unperturbed(perturbation) else f"{name}_{slug(perturbation)}"


def _select_rows(rows: list[ClipRecord], compressions: tuple[str, ...] | None
                 ) -> tuple[list[ClipRecord], list[dict]]:
    """Rows to export (sorted by id) and the rows refused with a reason."""
    refused = []
    if compressions is not None:
        wanted = {c.lower() for c in compressions}
        unknown = wanted - set(KNOWN_COMPRESSIONS)
        if unknown:
            raise BadInputError(f"unknown compression(s) {', '.join(sorted(unknown))}; choose from "
                                f"{', '.join(KNOWN_COMPRESSIONS)}")
        rows = [r for r in rows if r.compression in wanted]
    kept = []
    for r in sorted(rows, key=lambda r: r.id):
        if r.label not in LABELS:
            refused.append({"id": r.id, "reason": f"label {r.label!r} is neither real nor fake"})
        elif r.split not in SPLITS:
            refused.append({"id": r.id, "reason": f"split {r.split!r} is not one of {', '.join(SPLITS)}"})
        else:
            kept.append(r)
    return kept, refused


def export_dataset(dataset: str | os.PathLike, out: str | os.PathLike, fmt: str, *, frames: int = 32,
                   size: int = 256, compressions: tuple[str, ...] | None = None,
                   progress: bool = False) -> dict:
    """Export a sfumato dataset as ``fmt`` (deepfakebench, ffpp or csv) into ``out``; return the summary."""
    start = time.monotonic()
    if fmt not in FORMATS:
        raise BadInputError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if frames < 1:
        raise BadInputError(f"frames per video must be >= 1, got {frames}")
    if size < 8:
        raise BadInputError(f"crop size must be at least 8 px, got {size}")
    dataset, out = Path(dataset).resolve(), Path(out).resolve()
    if out == dataset:  # the export's README and index would overwrite the dataset's own files
        raise BadInputError(f"{out}: export into a folder other than the dataset itself")
    all_rows = read_metadata(dataset)
    rows, refused = _select_rows(all_rows, compressions)
    if not rows:
        which = f" at compression(s) {', '.join(compressions)}" if compressions else ""
        raise BadInputError(f"{dataset}: no exportable rows{which} ({len(all_rows)} rows in its metadata)")
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "deepfakebench":
        result = _export_deepfakebench(dataset, out, rows, frames, size, progress)
    elif fmt == "ffpp":
        result = _export_ffpp(dataset, out, rows, progress)
    else:
        result = _export_csv(dataset, out, rows)
    summary = {
        "format": fmt,
        "sfumato_version": __version__,
        "dataset": str(dataset),
        "out": str(out),
        "arguments": {"frames": frames, "size": size,
                      "compressions": list(compressions) if compressions is not None else None},
        "counts": {"rows": len(all_rows), "selected": len(rows) + len(refused), **result["counts"]},
        "failures": refused + result["failures"],
        **{k: v for k, v in result.items() if k not in ("counts", "failures")},
    }
    summary["seconds"] = round(time.monotonic() - start, 3)
    write_bytes_atomic(out / EXPORT_SUMMARY, _json_bytes(summary))
    return summary


# -- DeepfakeBench ---------------------------------------------------------------------------------
@dataclasses.dataclass
class _VideoPlan:
    """Where one row's crops go (paths relative to the export root)."""

    row: ClipRecord
    folder: str  # the video's folder name: its id, slugged (and made unique)
    frames_rel: Path  # <dataset>/<method>/<compression>/frames/<folder>
    landmarks_rel: Path



def _plan_videos(rows: list[ClipRecord]) -> list[_VideoPlan]:
    """Folder of every row, keyed by its unique id (never by a bare name that could merge videos)."""
    folders = _unique_names([r.id for r in rows], [slug(r.id) for r in rows])
    plans = []
    for r in rows:
        base = Path(DATASET_NAME) / slug(r.method) / slug(r.compression)
        plans.append(_VideoPlan(r, folders[r.id], base / "frames" / folders[r.id],
                                base / "landmarks" / folders[r.id]))
    return plans


def _check_settings(path: Path, settings: dict) -> None:
    """Stamp the crop settings into the export on the first run; refuse to mix settings on a rerun."""
    if path.is_file():
        before = json.loads(path.read_text())
        if before != settings:
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise ConfigMismatchError(
                f"{path.parent.parent} holds a DeepfakeBench export made with other settings "
                f"({', '.join(changed)}); use another output folder or delete this one")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, _json_bytes(settings))


def _frame_name(index: int, frame_count: int, ext: str) -> str:
    # DeepfakeBench parses frame file stems as integers; pad to 3 digits (its own naming) or more.
    width = max(3, len(str(max(frame_count - 1, 0))))
    return f"{index:0{width}d}.{ext}"


def _crop_video(path: Path, tmp: Path, n_frames: int, params: CropParams, backend: FaceBackend
                ) -> tuple[list[int], list[dict], int]:
    """Crop ``n_frames`` evenly spaced frames of ``path`` into ``tmp``/{frames,landmarks}.

    Returns the sampled frame indices that got a crop, the missing ones with reasons, and the
    video's frame count.
    """
    (tmp / "frames").mkdir(parents=True)
    (tmp / "landmarks").mkdir()
    # Detect on every sampled frame: they are far apart, so tracking between them would not help.
    track = track_video(path, backend, TrackerConfig(detect_every=1), sample=n_frames, keep_frames=True)
    count = track.info.frame_count
    written = []
    for j in np.flatnonzero(track.found):
        index = int(track.indices[j])
        crop, points, _ = crop_face(track.frames[j], track.points[j], params)
        write_image(tmp / "frames" / _frame_name(index, count, "png"), crop)
        np.save(tmp / "landmarks" / _frame_name(index, count, "npy"), points.astype(np.float32))
        written.append(index)
    return written, [{"index": m["index"], "reason": m["reason"]} for m in track.missing()], count


def _finished(out: Path, plan: _VideoPlan, record_path: Path) -> dict | None:
    """The record of a finished video that still matches its row and files, else None (redo it)."""
    if not record_path.is_file():
        return None
    try:
        rec = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    row = plan.row
    if rec.get("id") != row.id or (row.sha256 and rec.get("sha256") != row.sha256):
        return None  # the dataset's clip changed since it was exported
    files = rec.get("frames", []) + rec.get("landmarks", [])
    prefixes = (plan.frames_rel.as_posix() + "/", plan.landmarks_rel.as_posix() + "/")
    if not files or not all(f.startswith(prefixes) and (out / f).is_file() for f in files):
        return None
    # The crops depend only on the clip file; the row's facts may have been edited since (a split
    # reassigned), so the index always takes them from the current metadata.
    rec.update(_row_facts(row))
    return rec


def _row_facts(row: ClipRecord) -> dict:
    return {"clip_id": row.clip_id, "label": row.label, "label_name": deepfakebench_label(row),
            "split": row.split, "method": row.method, "compression": row.compression,
            "perturbation": row.perturbation}


def _export_deepfakebench(dataset: Path, out: Path, rows: list[ClipRecord], n_frames: int, size: int,
                          progress: bool) -> dict:
    """Crops, landmarks, JSON index, label_dict and README for DeepfakeBench (see module doc)."""
    from tqdm import tqdm

    params = dataclasses.replace(DETECTOR_CROP, size=size)
    state = out / STATE_DIR
    _check_settings(state / "settings.json", {
        "format": "deepfakebench", "frames": n_frames, "crop": params.to_dict(), "backend": "dlib",
        "tracker": {"detect_every": 1}, "image_format": "png"})
    (state / "videos").mkdir(parents=True, exist_ok=True)
    backend: FaceBackend | None = None  # loaded once, and only when a video must be built
    records, videos, failures, warnings = [], [], [], []
    built = existing = 0
    for plan in tqdm(_plan_videos(rows), desc="export", unit="video", disable=not progress):
        row = plan.row
        record_path = state / "videos" / f"{plan.folder}.json"
        rec = _finished(out, plan, record_path)
        if rec is not None:
            existing += 1
        else:
            # A killed run may have left a half-renamed video or its temp folder: start it over.
            for stale in (out / plan.frames_rel, out / plan.landmarks_rel, state / "tmp" / plan.folder):
                shutil.rmtree(stale, ignore_errors=True)
            record_path.unlink(missing_ok=True)
            tmp = state / "tmp" / plan.folder
            try:
                if backend is None:
                    backend = create_backend("dlib")
                written, missing, count = _crop_video(row.resolve(dataset), tmp, n_frames, params,
                                                      backend)
            except (SfumatoError, OSError) as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                failures.append({"id": row.id, "reason": str(exc)})
                videos.append({"id": row.id, "status": "failed", "reason": str(exc)})
                continue
            if not written:
                shutil.rmtree(tmp, ignore_errors=True)
                reason = f"no face in any of the {len(missing)} sampled frames"
                failures.append({"id": row.id, "reason": reason, "missing_frames": missing})
                videos.append({"id": row.id, "status": "failed", "reason": reason,
                               "missing_frames": missing})
                continue
            rec = {
                "id": row.id, **_row_facts(row), "source": str(row.resolve(dataset)), "sha256": row.sha256,
                "frame_count": count,
                "frames": [(plan.frames_rel / _frame_name(i, count, "png")).as_posix() for i in written],
                "landmarks": [(plan.landmarks_rel / _frame_name(i, count, "npy")).as_posix()
                              for i in written],
                "frame_indices": written,
                "missing_frames": missing,
            }
            (out / plan.frames_rel).parent.mkdir(parents=True, exist_ok=True)
            (out / plan.landmarks_rel).parent.mkdir(parents=True, exist_ok=True)
            # Landmarks first, frames second, the record last: the record marks a finished video.
            os.replace(tmp / "landmarks", out / plan.landmarks_rel)
            os.replace(tmp / "frames", out / plan.frames_rel)
            write_bytes_atomic(record_path, _json_bytes(rec))
            shutil.rmtree(tmp, ignore_errors=True)
            built += 1
        if rec["frames"][0].count("frames") != 1:
            # DeepfakeBench finds landmarks by replacing "frames" in the frame path: a second
            # occurrence (in a method or id) would send it to the wrong file.
            warnings.append(f"{row.id}: its frame paths contain 'frames' twice; DeepfakeBench's "
                            "landmark/mask lookup will not find its landmarks")
        records.append(rec)
        videos.append({"id": row.id, "status": "done", "folder": rec["frames"][0].rsplit("/", 1)[0],
                       "frames_written": len(rec["frames"]), "missing_frames": rec["missing_frames"]})
    shutil.rmtree(state / "tmp", ignore_errors=True)
    json_files = _write_deepfakebench_index(out, records)
    # From every selected row, so the config snippet is complete even if a method's videos failed.
    label_dict = {name: 0 if name == f"{DATASET_NAME}_real" else 1
                  for name in sorted({deepfakebench_label(r) for r in rows})}
    write_bytes_atomic(out / "label_dict.json", _json_bytes(label_dict))
    write_bytes_atomic(out / "README.md", _deepfakebench_readme(out, records, json_files, label_dict,
                                                                n_frames, size, failures).encode())
    missing_total = sum(len(r["missing_frames"]) for r in records)
    return {
        "counts": {"videos": len(rows), "built": built, "existing": existing, "failed": len(failures),
                   "frames_written": sum(len(r["frames"]) for r in records),
                   "frames_missing": missing_total,
                   "videos_with_missing_frames": sum(bool(r["missing_frames"]) for r in records)},
        "failures": failures,
        "json_files": json_files,
        "label_dict": label_dict,
        "videos": videos,
        "warnings": warnings,
    }


def _write_deepfakebench_index(out: Path, records: list[dict]) -> list[str]:
    """Write dataset_json/<name>.json for all rows and for each compression (/perturbation) group.

    DeepfakeBench nests a compression level only under its FaceForensics++ names; for any other
    dataset its loader reads {name: {label: {split: {video: ...}}}}, so each compression is its own
    dataset name here (sfumato_c23, ...) and ``sfumato`` holds every row.
    """
    groups: dict[str, list[dict]] = collections.defaultdict(list)
    for rec in records:
        groups[DATASET_NAME].append(rec)
        groups[_group_name(rec["compression"], rec["perturbation"])].append(rec)
    folder = out / "dataset_json"
    folder.mkdir(exist_ok=True)
    written = []
    for name in sorted(groups):
        tree: dict[str, dict] = {}
        for rec in sorted(groups[name], key=lambda r: r["id"]):
            by_split = tree.setdefault(rec["label_name"], {s: {} for s in SPLITS})
            # Only crops that exist are listed: DeepfakeBench opens every path it is given.
            by_split[rec["split"]][rec["id"]] = {"label": rec["label_name"], "frames": rec["frames"]}
        rel = f"dataset_json/{name}.json"
        write_bytes_atomic(out / rel, _json_bytes({name: tree}, indent=None))
        written.append(rel)
    return written


def _deepfakebench_readme(out: Path, records: list[dict], json_files: list[str], label_dict: dict,
                          n_frames: int, size: int, failures: list[dict]) -> str:
    """The export's README: layout, how to plug it into DeepfakeBench, what is missing."""
    counts = collections.Counter((r["label_name"], r["split"]) for r in records)
    labels = sorted({r["label_name"] for r in records})
    table = "\n".join(f"| {lab} | " + " | ".join(str(counts[(lab, s)]) for s in SPLITS) + " |"
                      for lab in labels)
    snippet = "\n".join(f"  {k}: {v}" for k, v in label_dict.items())
    names = ", ".join(f"`{Path(f).stem}`" for f in json_files)
    example = next((Path(f).stem for f in json_files if Path(f).stem != DATASET_NAME), DATASET_NAME)
    missing = sum(bool(r["missing_frames"]) for r in records)
    return f"""# sfumato dataset, DeepfakeBench export

Export root (absolute): `{out}`

Every path in the JSON files is **relative to the export root** above (e.g.
`{records[0]["frames"][0] if records else "sfumato/<method>/<compression>/frames/<id>/000.png"}`).

## Layout

- `sfumato/<method>/<compression>/frames/<id>/NNN.png`: {size} x {size} aligned face crops (dlib
  detector, largest face, 68 landmarks, eye line levelled, 1.3 x margin) of {n_frames} evenly spaced
  frames per video (np.linspace over the frame count); NNN is the frame's index in the source video.
- `sfumato/<method>/<compression>/landmarks/<id>/NNN.npy`: the 68 landmarks (iBUG order, float32,
  shape (68, 2)) in crop pixels. DeepfakeBench's own preprocessing stores 81 points (the same 68 plus
  forehead points): detectors that need the extra 13 points will not find them here. No masks.
- Videos are keyed by the dataset row's unique `id` (clip + compression + perturbation), never by a
  bare file name, so videos of different methods or compressions never merge.
- `dataset_json/`: DeepfakeBench dataset JSON files {names}.
  `sfumato` holds every exported row; `sfumato_<compression>` only the unperturbed rows at that
  compression (a perturbed group adds the perturbation to the name). Each is
  `{{name: {{label_name: {{split: {{id: {{"label": label_name, "frames": [...]}}}}}}}}}}`.
- `label_dict.json`: the label names and their 0 (real) / 1 (fake) labels.
- `export.json`: the run summary: counts, failed videos, and per video its `missing_frames`.

## Videos per label and split

| label | {" | ".join(SPLITS)} |
|---|{"---|" * len(SPLITS)}
{table}

Videos with sampled frames without a face: {missing} (listed per video as `missing_frames` in
`export.json`; their crops are simply absent and the JSON lists only existing crops). Videos with no
face at all (not in the JSON): {len(failures)} (listed under `failures` in `export.json`).

## Use in DeepfakeBench

1. Copy `dataset_json/*.json` into DeepfakeBench's `preprocessing/dataset_json/`.
2. Add the labels to `label_dict` in `training/config/train_config.yaml` and `test_config.yaml`:

```yaml
label_dict:
{snippet}
```

3. Make the relative frame paths resolve: run DeepfakeBench from the export root, or rewrite them to
   absolute paths once:

```python
import json, pathlib
root = pathlib.Path("{out}")
for f in (root / "dataset_json").glob("*.json"):
    d = json.loads(f.read_text())
    for labels in d.values():
        for splits in labels.values():
            for videos in splits.values():
                for v in videos.values():
                    v["frames"] = [str(root / p) for p in v["frames"]]
    f.write_text(json.dumps(d))
```

4. Train or test with e.g. `--test_dataset {example}` (one compression) or `sfumato` (every row).
"""


# -- FaceForensics++ layout ------------------------------------------------------------------------
def _ffpp_method(record: ClipRecord) -> str:
    return FFPP_METHODS.get(record.method, slug(record.method))


def _ffpp_plan(rows: list[ClipRecord]) -> dict[str, tuple[Path, list[str]]]:
    """For each row id: its path in the FF++ tree and its split pair (see the export README)."""
    def place(r: ClipRecord, clip: str) -> tuple[Path, list[str]]:
        comp = FFPP_COMPRESSION.get(r.compression, slug(r.compression))
        suffix = "" if _unperturbed(r.perturbation) else f"__{slug(r.perturbation)}"
        if r.label == "real":
            stem = clip + suffix
            return (Path("original_sequences") / DATASET_NAME / comp / "videos" / f"{stem}.mp4",
                    [stem, stem])
        # FF++ names fakes <target>_<source>: here the identity shown, then the driving identity
        # and the clip id, which keeps two clips of the same identity pair apart.
        target, rest = slug(r.source_identity), f"{slug(r.driver_identity)}_{clip}{suffix}"
        return (Path("manipulated_sequences") / _ffpp_method(r) / comp / "videos" / f"{target}_{rest}.mp4",
                [target, rest])

    plan = {r.id: place(r, slug(r.clip_id)) for r in rows}
    taken = collections.Counter(str(path).lower() for path, _ in plan.values())
    for r in rows:  # two rows on one path (e.g. equal clip ids): name them by their unique row ids
        if taken[str(plan[r.id][0]).lower()] > 1:
            plan[r.id] = place(r, slug(r.id))
    return plan


def _export_ffpp(dataset: Path, out: Path, rows: list[ClipRecord], progress: bool) -> dict:
    """A FaceForensics++-like tree of links/copies, split pair lists, an index and a README."""
    from tqdm import tqdm

    plan = _ffpp_plan(rows)
    counts = collections.Counter()
    failures, index = [], []
    pairs: dict[str, list[list[str]]] = {s: [] for s in SPLITS}
    for r in tqdm(rows, desc="export", unit="video", disable=not progress):
        rel, pair = plan[r.id]
        src = r.resolve(dataset)
        if not src.is_file():
            failures.append({"id": r.id, "reason": f"{src}: no such file"})
            continue
        try:
            counts[link_or_copy(src, out / rel)] += 1
        except OSError as exc:
            failures.append({"id": r.id, "reason": f"cannot write {out / rel}: {exc.strerror or exc}"})
            continue
        if pair not in pairs[r.split]:
            pairs[r.split].append(pair)
        index.append({"file": rel.as_posix(), "id": r.id, "clip_id": r.clip_id, "label": r.label,
                      "method": r.method, "split": r.split, "compression": r.compression,
                      "perturbation": r.perturbation, "pair": pair, "sha256": r.sha256})
    (out / "splits").mkdir(exist_ok=True)
    for s in SPLITS:
        write_bytes_atomic(out / "splits" / f"{s}.json", _json_bytes(sorted(pairs[s]), indent=None))
    write_bytes_atomic(out / "splits" / "index.json", _json_bytes(index))
    write_bytes_atomic(out / "README.md", _ffpp_readme(out, index).encode())
    return {"counts": {"videos": len(rows), "linked": counts["linked"], "copied": counts["copied"],
                       "existing": counts["existing"], "failed": len(failures)},
            "failures": failures,
            "splits": {s: len(pairs[s]) for s in SPLITS}}


def _ffpp_readme(out: Path, index: list[dict]) -> str:
    """The README of a FaceForensics++-like export."""
    per = collections.Counter((e["file"].split("/")[0] + "/" + e["file"].split("/")[1], e["split"])
                              for e in index)
    rows = "\n".join(f"| {folder} | " + " | ".join(str(per[(folder, s)]) for s in SPLITS) + " |"
                     for folder in sorted({f for f, _ in per}))
    return f"""# sfumato dataset, FaceForensics++-like export

Export root (absolute): `{out}`

- `original_sequences/sfumato/<compression>/videos/<clip_id>.mp4`: real clips.
- `manipulated_sequences/<Method>/<compression>/videos/<target>_<driver>_<clip_id>.mp4`: fakes, named
  like FF++'s `<target>_<source>`: the identity shown, then the driving identity, then the clip id
  (which keeps two clips of the same identity pair apart). Methods: sfumato's `self` and `cross`
  reenactments are `SfumatoSelf` and `SfumatoCross`; imported methods keep their names.
- `<compression>`: `raw` (FF++'s name for c0, lossless), `c23`, `c40` (`unknown` for imported files
  of unknown compression). Perturbed rows add `__<perturbation>` to the file name.
- Files are hard links to the dataset's files where possible (same file system), else copies.
- `splits/{{train,val,test}}.json`: lists of pairs `[a, b]` as FF++'s split files: a real video is
  named `a` (its pair is `[clip_id, clip_id]`), a fake video is named `a_b` (`a` = the identity
  shown, `b` = driving identity + clip id). Unlike FF++ a pair does not imply both `a_b` and `b_a`
  exist. The splits are the dataset's own (`sfumato dataset build` makes them identity-disjoint;
  an imported dataset keeps the splits of its folders).
- `splits/index.json`: every exported file with its row id, clip id, label, method, split,
  compression, perturbation, pair and sha256: the unambiguous version of the above.

| folder | {" | ".join(SPLITS)} |
|---|{"---|" * len(SPLITS)}
{rows}
"""


# -- flat CSV --------------------------------------------------------------------------------------
def _export_csv(dataset: Path, out: Path, rows: list[ClipRecord]) -> dict:
    """index.csv: one line per clip file with its absolute path and 0/1 label."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    failures, written = [], 0
    for r in rows:
        path = r.resolve(dataset).resolve()
        if not path.is_file():  # tools reading the index would crash on it: list it instead
            failures.append({"id": r.id, "reason": f"{path}: no such file"})
            continue
        w.writerow({"path": str(path), "label": int(r.label == "fake"), "label_name": r.label,
                    "split": r.split, "method": r.method, "compression": r.compression,
                    "perturbation": r.perturbation, "id": r.id, "clip_id": r.clip_id,
                    "frames": r.frames, "fps": r.fps, "sha256": r.sha256})
        written += 1
    write_bytes_atomic(out / "index.csv", buf.getvalue().encode())
    return {"counts": {"videos": len(rows), "written": written, "failed": len(failures)},
            "failures": failures, "index": "index.csv"}


# -- import ----------------------------------------------------------------------------------------
def _walk_videos(folder: Path, exclude: Path) -> tuple[list[Path], int]:
    """Video files under ``folder`` (sorted, hidden entries and ``exclude`` skipped) and the number
    of other files seen."""
    videos, other = [], 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(root, d).resolve() != exclude)
        for name in sorted(files):
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                videos.append(Path(root) / name)
            else:
                other += 1
    return videos, other


def _method_from_name(stem: str) -> str:
    """A fake's method from a ``fake_<method>_<rest>`` file name (shared/data/fakes_dev), else "fake"."""
    m = re.fullmatch(r"fake_([A-Za-z0-9]+)_.+", stem)
    return m.group(1) if m else "fake"


def _one_of(found: Iterable[str], what: str) -> tuple[str | None, str | None]:
    """The single value among ``found`` (None when none), or an error when they disagree."""
    values = sorted(set(found))
    if len(values) > 1:
        return None, f"conflicting {what} folders in the path ({', '.join(values)})"
    return (values[0] if values else None), None


def _identities(stem: str, label: str, method: str) -> tuple[str, str]:
    """(identity shown, driving identity) of an imported file, from FF++'s <target>_<source> names."""
    m = re.fullmatch(r"(\d+)_(\d+)", stem)
    if label == "real" or m is None:
        return stem, stem
    target, source = m.groups()
    return (source, target) if method.lower() in SWAP_METHODS else (target, source)


def _manifest_state(path: Path) -> tuple[str, str | None]:
    """C2PA state of an imported file (and a warning when it could not be read)."""
    from generator.provenance.verify import UNSUPPORTED, verify_file

    try:
        return verify_file(path).state, None
    except (SfumatoError, OSError, ValueError) as exc:
        return UNSUPPORTED, f"{path}: C2PA check failed ({exc})"


def _classify(rel: Path, split: str | None, compression: str | None, method: str | None,
              label: str | None = None) -> tuple[dict | None, str | None]:
    """Label, split, compression and method of a file from its folders, or the reason it is skipped."""
    folders = list(rel.parts[:-1])
    lower = [p.lower() for p in folders]
    if MASK_FOLDERS & set(lower):
        return None, "a mask video (FaceForensics++ masks folder), not a clip"
    real, fake = bool(REAL_WORDS & set(lower)), bool(FAKE_WORDS & set(lower))
    if real and fake:
        return None, "both a real and a fake folder in the path"
    if not (real or fake) and label is not None:  # the caller names the label of unlabelled paths
        real, fake = label == "real", label == "fake"
    if not (real or fake):
        return None, ("no real/fake folder in the path (real: " + ", ".join(sorted(REAL_WORDS))
                      + "; fake: " + ", ".join(sorted(FAKE_WORDS)) + ")")
    label = "real" if real else "fake"
    found_split, err = _one_of((p for p in lower if p in SPLITS), "split")
    if err:
        return None, err
    found_comp, err = _one_of((COMPRESSION_WORDS[p] for p in lower if p in COMPRESSION_WORDS),
                              "compression")
    if err:
        return None, err
    if label == "real":
        name = "real"
    else:
        # The folder after the first fake folder names the method (manipulated_sequences/Deepfakes,
        # fake/FaceSwap), skipping layout folders such as train/ or c23/ or videos/.
        first = next((i for i, p in enumerate(lower) if p in FAKE_WORDS), None)
        after = ([] if first is None else
                 [f for f in folders[first + 1:] if f.lower() not in LAYOUT_WORDS])
        name = after[0] if after else (method or _method_from_name(rel.stem))
    return {"label": label, "split": found_split or split or "test",
            "compression": found_comp or compression or "unknown", "method": name}, None


def import_folder(folder: str | os.PathLike, out: str | os.PathLike, *, split: str | None = None,
                  compression: str | None = None, method: str | None = None,
                  label: str | None = None, progress: bool = False) -> dict:
    """Read a folder of real/fake videos into sfumato metadata in ``out`` (files stay in place).

    ``label`` (real or fake) labels files whose path has no real/fake folder (e.g. a flat folder of
    other generators' clips named ``fake_<method>_*.mp4``)."""
    from tqdm import tqdm

    start = time.monotonic()
    folder, out = Path(folder).resolve(), Path(out).resolve()
    if not folder.is_dir():
        raise BadInputError(f"{folder}: no such folder")
    if out == folder:  # metadata and README.md would land among (and over) the user's own files
        raise BadInputError(f"{out}: write the imported metadata to a folder other than the videos' own")
    if label is not None and label not in ("real", "fake"):
        raise BadInputError(f"label must be real or fake, got {label!r}")
    if split is not None and split not in SPLITS:
        raise BadInputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if compression is not None:
        compression = COMPRESSION_WORDS.get(compression.lower(), compression.lower())
        if compression not in KNOWN_COMPRESSIONS:
            raise BadInputError(f"compression must be one of {', '.join(KNOWN_COMPRESSIONS)} (or raw), "
                                f"got {compression!r}")
    files, other = _walk_videos(folder, out)
    if not files:
        raise BadInputError(f"{folder}: no video files found (looked for "
                            f"{', '.join(sorted(VIDEO_EXTENSIONS))}; {other} other files)")
    skipped, warnings, found = [], [], []
    for path in tqdm(files, desc="import", unit="video", disable=not progress):
        rel = path.relative_to(folder)
        facts, reason = _classify(rel, split, compression, method, label)
        if facts is None:
            skipped.append({"path": rel.as_posix(), "reason": reason})
            continue
        try:
            with MediaReader(path) as reader:
                info, warning = reader.info, reader.warning
        except SfumatoError as exc:
            skipped.append({"path": rel.as_posix(), "reason": str(exc)})
            continue
        if info.kind != "video":
            skipped.append({"path": rel.as_posix(), "reason": "a still image, not a video"})
            continue
        if warning:
            warnings.append(f"{rel.as_posix()}: {warning}")
        found.append((path, rel, facts, info))
    if not found:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        raise BadInputError(f"{folder}: none of its {len(files)} video files could be imported "
                            f"({reasons}{'; ...' if len(skipped) > 3 else ''})")
    # Ids come from the whole relative path, so same-named files in different folders never merge;
    # clip ids leave out the compression folder, so one video's c23 and c40 files share theirs.
    rels = [r.as_posix() for _, r, _, _ in found]
    ids = _unique_names(rels, ["__".join(slug(p) for p in r.with_suffix("").parts) for _, r, _, _ in found])
    records = []
    for path, rel, facts, info in found:
        kept = [p for p in rel.with_suffix("").parts if p.lower() not in COMPRESSION_WORDS]
        source, driver = _identities(rel.stem, facts["label"], facts["method"])
        manifest, warning = _manifest_state(path)
        if warning:
            warnings.append(warning)
        records.append(ClipRecord(
            id=ids[rel.as_posix()], clip_id="__".join(slug(p) for p in kept), label=facts["label"],
            split=facts["split"], method=facts["method"], source_identity=source, driver_identity=driver,
            compression=facts["compression"], crf=COMPRESSIONS.get(facts["compression"]),
            frames=info.frame_count, fps=info.fps, width=info.width, height=info.height,
            manifest=manifest, path=str(path), sha256=sha256_file(path), origin="imported"))
    out.mkdir(parents=True, exist_ok=True)
    write_metadata(out, records)
    counts = {"videos_found": len(files), "imported": len(records), "skipped": len(skipped),
              "other_files": other}
    for key in ("split", "label", "method", "compression"):
        counts[f"by_{key}"] = dict(sorted(collections.Counter(getattr(r, key) for r in records).items()))
    summary = {"folder": str(folder), "out": str(out), "sfumato_version": __version__,
               "arguments": {"split": split, "compression": compression, "method": method,
                             "label": label},
               "counts": counts, "skipped": skipped, "warnings": warnings}
    summary["seconds"] = round(time.monotonic() - start, 3)
    write_bytes_atomic(out / IMPORT_SUMMARY, _json_bytes(summary))
    write_bytes_atomic(out / "README.md", _import_readme(summary, records).encode())
    return summary


def _import_readme(summary: dict, records: list[ClipRecord]) -> str:
    """The dataset card of an imported folder."""
    per = collections.Counter((r.label, r.method, r.split) for r in records)
    keys = sorted({(lab, m) for lab, m, _ in per})
    table = "\n".join(f"| {lab} | {m} | " + " | ".join(str(per[(lab, m, s)]) for s in SPLITS) + " |"
                      for lab, m in keys)
    c = summary["counts"]
    return f"""# Imported dataset

Made by `sfumato` {summary["sfumato_version"]} from `{summary["folder"]}`: {c["imported"]} videos imported,
{c["skipped"]} skipped (reasons in `import.json`). The videos are referenced in place (absolute `path`
in `metadata.jsonl` / `metadata.csv`), not copied; each row records the file's sha256.

| label | method | {" | ".join(SPLITS)} |
|---|---|{"---|" * len(SPLITS)}
{table}

Compression: {", ".join(f"{k} {v}" for k, v in c["by_compression"].items())}.

How rows were labelled (folder names, case-insensitive):
- real: {", ".join(sorted(REAL_WORDS))}
- fake: {", ".join(sorted(FAKE_WORDS))}
- split: a train/val/test folder, else `{summary["arguments"]["split"] or "test"}`
- compression: a c0/raw, c23 or c40 folder, else `{summary["arguments"]["compression"] or "unknown"}`
- method of a fake: the folder after its fake folder (e.g. `manipulated_sequences/Deepfakes`), else
  `{summary["arguments"]["method"] or "fake"}`
- identities: from file names (FaceForensics++'s `<target>_<source>`), else the file name.

sfumato does not check that these splits are identity-disjoint. Realism scores are not computed on
import.
"""

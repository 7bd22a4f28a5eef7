"""DeepfakeBench's preprocessed layout, so its loaders read sfumato data without glue code.

Per video (keyed by the row's unique ``id``) ``frames/<video>/NNN.png`` aligned face crops (1.3
margin, the detection protocol's crop) of evenly spaced frames and ``landmarks/<video>/NNN.npy``
(68 x 2, crop pixels), plus its dataset JSON index ``dataset_json/<name>.json``, ``label_dict.json``
and a README.md. Frames without a face are listed (``missing_frames``), never dropped silently; a
video with no face at all is listed as failed. Each video is built in a temporary folder and renamed
into place, so a rerun skips the finished ones.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.datasets.export.common import DATASET_NAME, json_bytes, unique_names, unperturbed
from detector.data.schema import SPLITS, ClipRecord
from generator.corpus.prepare import slug
from generator.errors import ConfigMismatchError, SfumatoError
from generator.faces.backends import FaceBackend, create_backend
from generator.faces.crop import DETECTOR_CROP, CropParams, crop_face
from generator.faces.tracking import TrackerConfig, track_video
from generator.io.files import write_bytes_atomic
from generator.io.video import write_image

STATE_DIR = ".sfumato_export"  # resume state of an export: settings, finished-video records, temp


def deepfakebench_label(record: ClipRecord) -> str:
    """The DeepfakeBench label name of a row: sfumato_real, or sfumato_<method> for fakes."""
    if record.label == "real":
        return f"{DATASET_NAME}_real"
    method = slug(record.method)
    # A fake must never share the real label name, whatever its method is called.
    return f"{DATASET_NAME}_{method}" if method.lower() != "real" else f"{DATASET_NAME}_fake"


def _group_name(compression: str, perturbation: str | None) -> str:
    """The per-compression (and per-perturbation) DeepfakeBench dataset name of a row."""
    name = f"{DATASET_NAME}_{slug(compression)}"
    return name if unperturbed(perturbation) else f"{name}_{slug(perturbation)}"


@dataclasses.dataclass
class _VideoPlan:
    """Where one row's crops go (paths relative to the export root)."""

    row: ClipRecord
    folder: str  # the video's folder name: its id, slugged (and made unique)
    frames_rel: Path  # <dataset>/<method>/<compression>/frames/<folder>
    landmarks_rel: Path



def _plan_videos(rows: list[ClipRecord]) -> list[_VideoPlan]:
    """Folder of every row, keyed by its unique id (never by a bare name that could merge videos)."""
    folders = unique_names([r.id for r in rows], [slug(r.id) for r in rows])
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
    write_bytes_atomic(path, json_bytes(settings))


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


def export_deepfakebench(dataset: Path, out: Path, rows: list[ClipRecord], n_frames: int, size: int,
                         progress: bool) -> dict:
    """Crops, landmarks, JSON index, label_dict and README for DeepfakeBench (see module doc)."""
    from tqdm import tqdm

    params = dataclasses.replace(DETECTOR_CROP, size=size)
    state = out / STATE_DIR
    _check_settings(state / "settings.json", {
        "format": "deepfakebench", "frames": n_frames, "crop": params.to_dict(), "backend": "dlib",
        "tracker": {"detect_every": 1}, "image_format": "png"})
    (state / "videos").mkdir(parents=True, exist_ok=True)
    # loaded once, and only when a video must be built (a failed load is retried by the next video)
    backend = functools.cache(lambda: create_backend("dlib"))
    records, videos, failures, warnings = [], [], [], []
    built = existing = 0
    for plan in tqdm(_plan_videos(rows), desc="export", unit="video", disable=not progress):
        row = plan.row
        record_path = state / "videos" / f"{plan.folder}.json"
        rec = _finished(out, plan, record_path)
        if rec is not None:
            existing += 1
        else:
            rec, failure = _build_video(dataset, out, state, plan, record_path, n_frames, params, backend)
            if failure is not None:
                failures.append(failure)
                videos.append({"id": row.id, "status": "failed",
                               **{k: v for k, v in failure.items() if k != "id"}})
                continue
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
    json_files, label_dict = _write_index_and_readme(out, rows, records, n_frames, size, failures)
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


def _build_video(dataset: Path, out: Path, state: Path, plan: _VideoPlan, record_path: Path, n_frames: int,
                 params: CropParams, backend: Callable[[], FaceBackend]) -> tuple[dict | None, dict | None]:
    """Crop one video into place and write its record: (record, None), or (None, failure)."""
    row = plan.row
    # A killed run may have left a half-renamed video or its temp folder: start it over.
    for stale in (out / plan.frames_rel, out / plan.landmarks_rel, state / "tmp" / plan.folder):
        shutil.rmtree(stale, ignore_errors=True)
    record_path.unlink(missing_ok=True)
    tmp = state / "tmp" / plan.folder
    try:
        written, missing, count = _crop_video(row.resolve(dataset), tmp, n_frames, params, backend())
    except (SfumatoError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return None, {"id": row.id, "reason": str(exc)}
    if not written:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = f"no face in any of the {len(missing)} sampled frames"
        return None, {"id": row.id, "reason": reason, "missing_frames": missing}
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
    write_bytes_atomic(record_path, json_bytes(rec))
    shutil.rmtree(tmp, ignore_errors=True)
    return rec, None


def _write_index_and_readme(out: Path, rows: list[ClipRecord], records: list[dict], n_frames: int,
                            size: int, failures: list[dict]) -> tuple[list[str], dict]:
    """The JSON index, label_dict.json and README.md; returns (JSON files, label dict)."""
    json_files = _write_deepfakebench_index(out, records)
    # From every selected row, so the config snippet is complete even if a method's videos failed.
    label_dict = {name: 0 if name == f"{DATASET_NAME}_real" else 1
                  for name in sorted({deepfakebench_label(r) for r in rows})}
    write_bytes_atomic(out / "label_dict.json", json_bytes(label_dict))
    write_bytes_atomic(out / "README.md", _deepfakebench_readme(out, records, json_files, label_dict,
                                                                n_frames, size, failures).encode())
    return json_files, label_dict

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
        write_bytes_atomic(out / rel, json_bytes({name: tree}, indent=None))
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

"""Exports of sfumato datasets to the formats existing tools read (one module per format; the import
of labelled video folders is ``benchmarks.datasets.importer``).

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

import os
import time
from pathlib import Path

from benchmarks.datasets.export.common import DATASET_NAME, KNOWN_COMPRESSIONS, json_bytes
from benchmarks.datasets.export.csv_index import export_csv
from benchmarks.datasets.export.deepfakebench import deepfakebench_label, export_deepfakebench
from benchmarks.datasets.export.ffpp import export_ffpp
from detector.data.schema import LABELS, SPLITS, ClipRecord, read_metadata
from generator import __version__
from generator.errors import BadInputError
from generator.io.files import write_bytes_atomic

__all__ = ["DATASET_NAME", "EXPORT_SUMMARY", "FORMATS", "deepfakebench_label", "export_dataset"]

FORMATS = ("deepfakebench", "ffpp", "csv")
EXPORT_SUMMARY = "export.json"


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
        result = export_deepfakebench(dataset, out, rows, frames, size, progress)
    elif fmt == "ffpp":
        result = export_ffpp(dataset, out, rows, progress)
    else:
        result = export_csv(dataset, out, rows)
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
    write_bytes_atomic(out / EXPORT_SUMMARY, json_bytes(summary))
    return summary

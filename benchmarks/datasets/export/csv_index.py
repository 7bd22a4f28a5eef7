"""One flat ``index.csv`` (absolute path, 0/1 label, split, method, compression, ...)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from detector.data.schema import ClipRecord
from generator.io.files import write_bytes_atomic

CSV_COLUMNS = ["path", "label", "label_name", "split", "method", "compression", "perturbation", "id",
               "clip_id", "frames", "fps", "sha256"]


def export_csv(dataset: Path, out: Path, rows: list[ClipRecord]) -> dict:
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

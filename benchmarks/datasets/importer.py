"""``sfumato dataset import``: a folder of labelled real/fake videos (e.g. a FaceForensics++ subset a
user owns) read into sfumato's metadata format, the files left in place.

Labels, splits, compressions and methods come from folder names (case-insensitive); ``import.json``
records what was imported and skipped, ``README.md`` is the card.
"""

from __future__ import annotations

import collections
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from benchmarks.datasets.export.common import KNOWN_COMPRESSIONS, json_bytes, unique_names
from detector.data.schema import COMPRESSIONS, SPLITS, ClipRecord, write_metadata
from generator import __version__
from generator.corpus.prepare import slug
from generator.errors import BadInputError, SfumatoError
from generator.io.files import sha256_file, write_bytes_atomic
from generator.io.video import VIDEO_EXTENSIONS, MediaReader

IMPORT_SUMMARY = "import.json"
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
    start = time.monotonic()
    folder, out = Path(folder).resolve(), Path(out).resolve()
    compression = _check_arguments(folder, out, split, compression, label)
    files, other = _walk_videos(folder, out)
    if not files:
        raise BadInputError(f"{folder}: no video files found (looked for "
                            f"{', '.join(sorted(VIDEO_EXTENSIONS))}; {other} other files)")
    found, skipped, warnings = _probe(folder, files, split, compression, method, label, progress)
    if not found:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        raise BadInputError(f"{folder}: none of its {len(files)} video files could be imported "
                            f"({reasons}{'; ...' if len(skipped) > 3 else ''})")
    records = _records(found, warnings)
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
    write_bytes_atomic(out / IMPORT_SUMMARY, json_bytes(summary))
    write_bytes_atomic(out / "README.md", _import_readme(summary, records).encode())
    return summary


def _check_arguments(folder: Path, out: Path, split: str | None, compression: str | None,
                     label: str | None) -> str | None:
    """Refuse bad arguments before any file is read; returns the compression in its canonical name."""
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
    return compression


def _probe(folder: Path, files: list[Path], split: str | None, compression: str | None,
           method: str | None, label: str | None, progress: bool
           ) -> tuple[list[tuple], list[dict], list[str]]:
    """Classify and open every file: ((path, rel, facts, info) of the importable ones, skipped, warnings)."""
    from tqdm import tqdm

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
    return found, skipped, warnings


def _records(found: list[tuple], warnings: list[str]) -> list[ClipRecord]:
    """The metadata rows of the importable files (their C2PA warnings appended to ``warnings``)."""
    # Ids come from the whole relative path, so same-named files in different folders never merge;
    # clip ids leave out the compression folder, so one video's c23 and c40 files share theirs.
    rels = [r.as_posix() for _, r, _, _ in found]
    ids = unique_names(rels, ["__".join(slug(p) for p in r.with_suffix("").parts) for _, r, _, _ in found])
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
    return records

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

"""A FaceForensics++-like tree (``original_sequences/sfumato/{raw,c23,c40}/videos``,
``manipulated_sequences/<Method>/...``) of hard links (copies across file systems) and
``splits/{train,val,test}.json``."""

from __future__ import annotations

import collections
from pathlib import Path

from benchmarks.datasets.export.common import DATASET_NAME, json_bytes, unperturbed
from detector.data.schema import SPLITS, ClipRecord
from generator.corpus.prepare import slug
from generator.io.files import link_or_copy, write_bytes_atomic

FFPP_COMPRESSION = {"c0": "raw", "c23": "c23", "c40": "c40", "unknown": "unknown"}  # FF++ calls c0 raw
FFPP_METHODS = {"self": "SfumatoSelf", "cross": "SfumatoCross"}  # FF++-style CamelCase method folders


def _ffpp_method(record: ClipRecord) -> str:
    return FFPP_METHODS.get(record.method, slug(record.method))


def _ffpp_plan(rows: list[ClipRecord]) -> dict[str, tuple[Path, list[str]]]:
    """For each row id: its path in the FF++ tree and its split pair (see the export README)."""
    def place(r: ClipRecord, clip: str) -> tuple[Path, list[str]]:
        comp = FFPP_COMPRESSION.get(r.compression, slug(r.compression))
        suffix = "" if unperturbed(r.perturbation) else f"__{slug(r.perturbation)}"
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


def export_ffpp(dataset: Path, out: Path, rows: list[ClipRecord], progress: bool) -> dict:
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
        write_bytes_atomic(out / "splits" / f"{s}.json", json_bytes(sorted(pairs[s]), indent=None))
    write_bytes_atomic(out / "splits" / "index.json", json_bytes(index))
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

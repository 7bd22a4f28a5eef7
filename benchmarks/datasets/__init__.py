"""Benchmark datasets: real/fake clips planned and built, the card, perturbations, exports and imports.

plan (what to make: splits, segments, the clip grid, shards) -> render (a person and a face track per
clip) -> clips (encode, sign, score one clip) -> build (the job, finish, merge), with hard (hard-example
candidates), card (README and plots), perturb, export/ (one module per format) and importer.
"""

from benchmarks.datasets.build import BuildResult, DatasetResult, build_dataset, finish_dataset, merge_shards
from benchmarks.datasets.export import FORMATS, export_dataset
from benchmarks.datasets.importer import import_folder
from benchmarks.datasets.perturb import perturb_dataset
from benchmarks.datasets.plan import BuildConfig, ClipPlan, Segment, make_plan, parse_shard

__all__ = [
    "FORMATS", "BuildConfig", "BuildResult", "ClipPlan", "DatasetResult", "Segment", "build_dataset",
    "export_dataset", "finish_dataset", "import_folder", "make_plan", "merge_shards", "parse_shard",
    "perturb_dataset",
]

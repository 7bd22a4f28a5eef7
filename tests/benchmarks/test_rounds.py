"""dataset round: the round table has one row per detector and one column per round's test set, its
diagonal matches each round's own evaluation; a killed run resumes; mismatched detector and
generator are refused; the union dataset keeps clips of every round apart."""

from __future__ import annotations

import json

import pytest

from benchmarks.adversarial.against_detector import AdversarialConfig
from benchmarks.adversarial.rounds import RoundConfig, run_rounds, write_union
from benchmarks.adversarial.table import video_auc
from benchmarks.datasets.plan import BuildConfig
from detector.data.schema import read_metadata
from generator.errors import ConfigMismatchError

CFG = RoundConfig(
    rounds=1,
    build=BuildConfig(splits=(0.34, 0.33, 0.33), shots=(1,), modes=("FF",), fakes_per_real=1, clip_frames=8,
                      max_side=160, compressions=("c23", "c40")),
    adversarial=AdversarialConfig(steps=2, batch_size=2, k=2, lr_g=1e-3),
    detector_epochs=1, detector_frames=2, detector_batch_size=8, eval_frames=4, quality_videos=1,
    robust_backbone="test_resnet", robust_epochs=1)


class Killed(Exception):
    pass


@pytest.fixture
def visible_fakes(monkeypatch):
    """The tiny test generator paints faces dlib cannot find, so no detector could train on its fakes:
    here a fake is its target clip with red and blue swapped (a face, and a cue a detector learns).
    Rendering itself is covered by test_build; this file tests the rounds around it."""
    import dataclasses

    import numpy as np

    from benchmarks.datasets.render import ClipMaker

    real_render = ClipMaker.render_full

    def render_full(self, clip, shot_seed=None):
        if clip.label == "real":
            return real_render(self, clip, shot_seed)
        frames, matrices, local, found, points = real_render(self, dataclasses.replace(clip, label="real"))
        return np.ascontiguousarray(frames[..., ::-1]), matrices, local, found, points

    monkeypatch.setattr(ClipMaker, "render_full", render_full)


def test_round_table_resume_and_diagonal(visible_fakes, corpus, checkpoint, tiny_detector, signing, tmp_path):
    out = tmp_path / "rounds"

    def kill_at_round1_detector(step: str) -> None:
        if step == "round1/detector":
            raise Killed(step)

    with pytest.raises(Killed):
        run_rounds(corpus, checkpoint, tiny_detector, out, CFG, signing=signing, command="pytest first",
                   on_step=kill_at_round1_detector)
    assert (out / "round1" / "generator.safetensors").is_file()
    assert not (out / "round1" / "detector.safetensors").exists()

    s = run_rounds(corpus, checkpoint, tiny_detector, out, CFG, signing=signing, command="pytest second")
    steps = s["steps"]
    assert steps["round0/dataset"]["reused"] and steps["round1/generator"]["reused"]
    assert steps["round1/dataset"]["reused"] and not steps["round1/detector"]["reused"]

    table = s["table"]
    assert table["rows"] == ["D0", "D1", "robust (test_resnet)"] and table["columns"] == ["T0", "T1"]
    assert len(table["cells"]) == 3 and all(len(row) == 2 for row in table["cells"])
    assert all(set(c) == {"c23", "c40"} for row in table["cells"] for c in row)
    for n in range(2):  # the diagonal is each round's own evaluation of its own detector
        own = json.loads((out / f"round{n}" / "eval" / "eval.json").read_text())
        assert table["cells"][n][n] == {c: video_auc(own, c) for c in ("c23", "c40")}
        assert steps[f"round{n}/eval"]["c23"] == table["cells"][n][n]["c23"]
        assert own["detector_sha256"] == table["hashes"]["detectors"][f"D{n}"]
    assert any(v is not None for row in table["cells"] for c in row for v in c.values())
    saved = json.loads((out / "table.json").read_text())
    assert saved["cells"] == table["cells"] and len(saved["hashes"]["datasets"]) == 2
    assert "| D1 |" in (out / "table.md").read_text() and (out / "table.png").stat().st_size > 1000
    card = (out / "README.md").read_text()
    assert table["hashes"]["generators"][1][:16] in card and "pytest second" in card

    state = json.loads((out / "rounds.json").read_text())
    assert state["commands"] == ["pytest first", "pytest second"]
    assert state["stamp"]["config"]["rounds"] == 1 and state["pair"]["backbone"] == "test_efficientnet"
    gen1 = steps["round1/generator"]
    assert {"before", "after", "sha256"} <= set(gen1)
    quality = json.loads((out / "round1" / "quality.json").read_text())
    assert set(quality) >= {"before", "after", "videos"}

    # both rounds share one identity split; round 1's fakes are new clips
    s0 = json.loads((out / "round0" / "dataset" / "splits.json").read_text())["identities"]
    s1 = json.loads((out / "round1" / "dataset" / "splits.json").read_text())["identities"]
    assert s0 == s1
    # D1 was fine-tuned from D0 on the union of both rounds
    union = read_metadata(out / "round1" / "union")
    assert {r.id.split("-")[0] for r in union} == {"r0", "r1"}
    assert len({r.id for r in union}) == len(union)
    assert all((out / "round1" / "union" / r.path).resolve().is_file() for r in union)

    # another run's settings into the same folder are refused
    import dataclasses

    with pytest.raises(ConfigMismatchError, match="another corpus, generator, detector or settings"):
        run_rounds(corpus, checkpoint, tiny_detector, out, dataclasses.replace(CFG, eval_frames=3),
                   signing=signing)


def test_mismatched_generator_and_detector_are_refused(corpus, checkpoint, tmp_path):
    from detector.scan import BUNDLED_DETECTOR

    with pytest.raises(ConfigMismatchError, match="mismatched versions"):
        run_rounds(corpus, checkpoint, BUNDLED_DETECTOR, tmp_path / "r", CFG)
    assert not (tmp_path / "r" / "round0").exists()


def test_union_prefixes_ids_and_rewrites_paths(tmp_path):
    import numpy as np

    from detector.data.schema import write_metadata
    from tests.detector.conftest import add_clip

    frames = [np.full((32, 32, 3), 90, np.uint8)] * 4
    dirs = []
    for k in range(2):
        d = tmp_path / f"ds{k}"
        rows = []
        add_clip(d, rows, "a", frames, "real", "train")
        write_metadata(d, rows)
        dirs.append(d)
    union = read_metadata(write_union(dirs, tmp_path / "u"))
    assert [r.id for r in union] == ["r0-a_c23", "r1-a_c23"]
    assert [r.path for r in union] == ["../ds0/videos/a/c23.mp4", "../ds1/videos/a/c23.mp4"]


TORCHRUN_SCRIPT = '''
import dataclasses, json, sys
import numpy as np
from benchmarks.datasets.render import ClipMaker
from benchmarks.adversarial.rounds import run_rounds
from generator.provenance.manifest import SigningOptions
from tests.benchmarks.test_rounds import CFG

real_render = ClipMaker.render_full

def render_full(self, clip, shot_seed=None):  # as the visible_fakes fixture
    if clip.label == "real":
        return real_render(self, clip, shot_seed)
    frames, matrices, local, found, points = real_render(self, dataclasses.replace(clip, label="real"))
    return np.ascontiguousarray(frames[..., ::-1]), matrices, local, found, points

ClipMaker.render_full = render_full
corpus, checkpoint, detector, out, keys = sys.argv[1:6]
cfg = dataclasses.replace(CFG, robust_backbone=None, quality_videos=0, hard_candidates=2)
s = run_rounds(corpus, checkpoint, detector, out, cfg, signing=SigningOptions(keys_dir=keys))
print("SUMMARY", json.dumps(None if s is None else s["table"]["rows"]))
'''


def test_rounds_under_torchrun_build_each_round_in_shards(corpus, checkpoint, tiny_detector, tmp_path):
    """Two ranks; round 1's fakes are also the hardest of 2 candidates for D0 (--hard 2)."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    script = tmp_path / "rounds_script.py"
    script.write_text(TORCHRUN_SCRIPT)
    out = tmp_path / "tr"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    r = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", str(script), str(corpus),
                        str(checkpoint), str(tiny_detector), str(out), str(tmp_path / "keys")],
                       capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'SUMMARY ["D0", "D1"]' in r.stdout and "SUMMARY null" in r.stdout  # rank 0 and rank 1
    for n in range(2):  # each rank built its shard of every round's dataset
        ds = out / f"round{n}" / "dataset"
        assert {p.name for p in ds.glob("build_summary.shard*.json")} == {"build_summary.shard0of2.json",
                                                                          "build_summary.shard1of2.json"}
        assert (ds / "metadata.jsonl").is_file()
    table = json.loads((out / "table.json").read_text())
    assert len(table["cells"]) == 2 and all(len(row) == 2 for row in table["cells"])
    from generator.io.files import sha256_file

    f = json.loads((out / "round1" / "dataset" / "filter_summary.json").read_text())
    assert f["judge_sha256"] == sha256_file(out / "round0" / "detector.safetensors")
    assert f["candidates_tried"] == 2 * f["planned_fakes"] and f["kept_fakes"] == f["planned_fakes"]
    assert not (out / "round0" / "dataset" / "filter_summary.json").exists()


def test_round_detectors_keep_the_first_detectors_recipe():
    from benchmarks.adversarial.rounds import finetune_config

    recipe = {"backbone": "tf_efficientnet_lite0", "input_size": 128, "compressions": ["c0", "c23", "c40"],
              "sbi": 0.8, "degrade": True, "balance": True, "lr": 2e-4, "epochs": 2, "frames": 8}
    cfg = finetune_config(recipe, RoundConfig(detector_epochs=3, detector_lr=5e-6, detector_frames=4), n=2)
    # what D_0 learnt from stays: self-blends, degradations, every level
    assert cfg.sbi == 0.8 and cfg.degrade and cfg.balance and cfg.compressions == ("c0", "c23", "c40")
    assert cfg.backbone == "tf_efficientnet_lite0" and cfg.input_size == 128
    # the fine-tuning schedule is the rounds' own, not D_0's from-ImageNet one
    assert cfg.lr == 5e-6 and cfg.epochs == 3 and cfg.frames == 4 and cfg.seed == 2
    # a detector file without a recipe falls back to the defaults rather than failing
    assert finetune_config({}, RoundConfig(), n=1).sbi == 0.0

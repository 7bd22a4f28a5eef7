"""Hard examples in dataset build: the realism filter keeps only fakes above its threshold and records
what it dropped; a quantile threshold comes from the real clips; --hard-for keeps the candidate the
detector scores most real; settings from before the filter keep their digest."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from benchmarks.datasets.build import build_dataset, build_document
from benchmarks.datasets.plan import BuildConfig
from benchmarks.datasets.render import FileRealismScorer
from detector.data.schema import read_metadata
from generator.errors import BadInputError, ConfigMismatchError
from generator.io.files import sha256_file

BASE = BuildConfig(splits=(0.34, 0.33, 0.33), shots=(1,), modes=("FF",), fakes_per_real=1, clip_frames=8,
                   max_side=160, compressions=("c23",))


def pixel_hash(self, frames, matrices, points, found):
    """A stand-in r that tells candidates apart far more than the tiny D does: a hash of the pixels,
    in 0..1 (any change to the rendered face moves it)."""
    sums = frames.reshape(len(frames), -1).astype(np.int64).sum(1)
    r = ((sums * 7919) % 10007) / 10007.0
    r[~np.asarray(found, bool)] = np.nan
    return r


@pytest.fixture
def bright_r(monkeypatch):
    monkeypatch.setattr(FileRealismScorer, "frames", pixel_hash)


def _records(out):
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def test_realism_filter_keeps_only_fakes_above_the_threshold_and_records_drops(
        bright_r, corpus, checkpoint, signing, tmp_path):
    # pass 1: three candidates per fake, no threshold (the highest r wins) -> every candidate's r
    first = tmp_path / "all"
    build_dataset(corpus, checkpoint, first, dataclasses.replace(BASE, candidates=3), signing=signing)
    recs = _records(first)
    fakes = {i: r for i, r in recs.items() if not i.startswith("real")}
    assert fakes and all(len(r["selection"]["candidates"]) == 3 for r in fakes.values())
    for r in fakes.values():
        cands = r["selection"]["candidates"]
        assert r["selection"]["chosen"] == int(np.argmax([c["realism_mean"] for c in cands]))
        assert len({c["seed"] for c in cands}) == 3  # each candidate draws its own shots
    # the threshold lies between two fakes' best candidates, so some fakes pass and some do not
    # whatever the pixels come out as; halfway between two tried values, so no rounding ties
    tried = [c["realism_mean"] for r in fakes.values() for c in r["selection"]["candidates"]]
    best = sorted({max(c["realism_mean"] for c in r["selection"]["candidates"]) for r in fakes.values()})
    assert len(best) >= 2
    k = len(best) // 2
    threshold = round((best[k - 1] + best[k]) / 2, 7)
    assert best[k - 1] < threshold < best[k]

    # pass 2: the same candidates (same seeds) against a threshold
    out = tmp_path / "filtered"
    cfg = dataclasses.replace(BASE, candidates=3, min_realism=threshold)
    summary = build_dataset(corpus, checkpoint, out, cfg, signing=signing)
    recs2 = _records(out)
    kept = {i for i, r in recs2.items() if r["status"] == "done" and not i.startswith("real")}
    dropped = {i for i, r in recs2.items() if r["status"] == "filtered"}
    expect_kept = {i for i, r in fakes.items()
                   if max(c["realism_mean"] for c in r["selection"]["candidates"]) >= threshold}
    assert kept == expect_kept and dropped == set(fakes) - expect_kept and dropped and kept
    for i in kept:
        sel = recs2[i]["selection"]
        chosen = sel["candidates"][sel["chosen"]]
        assert chosen["passed"] and chosen["realism_mean"] >= threshold - 1e-5
        assert sel["threshold"] == threshold
    for i in dropped:
        assert all(not c["passed"] and c["realism_mean"] < threshold + 1e-5
                   for c in recs2[i]["selection"]["candidates"])
        assert "none of 3 candidate(s) passed" in recs2[i]["reason"]
    assert summary.filtered_now == len(dropped)
    # the metadata holds only the kept fakes (and every real clip); the card and splits.json list drops
    rows = read_metadata(out)
    assert {r.clip_id for r in rows if r.label == "fake"} == kept
    assert len({r.clip_id for r in rows if r.label == "real"}) == 6
    f = json.loads((out / "filter_summary.json").read_text())
    assert f["candidates_tried"] == 3 * len(fakes) and f["kept_fakes"] == len(kept)
    assert f["planned_fakes"] == len(fakes) and f["threshold"] == threshold
    assert f["acceptance_rate"] == pytest.approx(sum(c >= threshold for c in tried) / len(tried), abs=1e-4)
    assert 0 < f["extra_generation_share"] < 1
    card = (out / "README.md").read_text()
    assert "## Hard examples" in card and f"{len(kept)} of {len(fakes)} planned" in card
    assert all(f"clip {i} (filtered)" in card for i in dropped)
    assert (out / "filter_hist.png").stat().st_size > 1000
    split_doc = json.loads((out / "splits.json").read_text())
    assert {d["clip_id"] for d in split_doc["filtered_clips"]} == dropped


def test_quantile_threshold_comes_from_the_real_clips(bright_r, corpus, checkpoint, signing, tmp_path):
    out = tmp_path / "q"
    cfg = dataclasses.replace(BASE, candidates=2, realism_quantile=0.5)
    build_dataset(corpus, checkpoint, out, cfg, signing=signing)
    got = json.loads((out / "filter.json").read_text())["threshold"]
    means = got["real_means"]
    assert sorted(means) == sorted(f"real_person{k}_s0" for k in range(6))
    assert got["value"] == pytest.approx(np.quantile(list(means.values()), 0.5), abs=1e-5)
    assert "quantile 0.5" in got["source"]
    for rec in _records(out).values():
        if rec.get("selection") and rec["status"] == "done":
            sel = rec["selection"]
            assert sel["candidates"][sel["chosen"]]["realism_mean"] >= got["value"] - 1e-5


def test_hard_for_keeps_the_candidate_the_detector_scores_most_real(
        corpus, checkpoint, signing, tiny_detector, tmp_path):
    out = tmp_path / "hard"
    cfg = dataclasses.replace(BASE, candidates=3, hard_for_sha256=sha256_file(tiny_detector))
    build_dataset(corpus, checkpoint, out, cfg, signing=signing, hard_for=tiny_detector)
    fakes = [r for i, r in _records(out).items() if not i.startswith("real")]
    assert fakes
    for r in fakes:
        p = [c["fake_probability"] for c in r["selection"]["candidates"]]
        assert all(v is not None and 0 <= v <= 1 for v in p)
        assert r["selection"]["chosen"] == int(np.argmin(p))
        assert r["selection"]["judge_sha256"] == sha256_file(tiny_detector)
    assert "detector sha256" in (out / "README.md").read_text()
    # the detector file must be the one the settings name
    other = tmp_path / "other.safetensors"
    from tests.benchmarks.conftest import write_tiny_detector

    write_tiny_detector(other, seed=1)
    with pytest.raises(ConfigMismatchError, match="not the detector"):
        build_dataset(corpus, checkpoint, out, cfg, signing=signing, hard_for=other)
    with pytest.raises(BadInputError, match="--hard-for"):
        build_dataset(corpus, checkpoint, out, cfg, signing=signing)


def test_filter_settings_are_checked_and_old_digests_stay(corpus, checkpoint):
    with pytest.raises(BadInputError, match="not both"):
        BuildConfig(min_realism=0.1, realism_quantile=0.5)
    with pytest.raises(BadInputError, match="0..1"):
        BuildConfig(realism_quantile=1.5)
    with pytest.raises(BadInputError, match="candidates"):
        BuildConfig(candidates=0)
    assert not BASE.filtering and dataclasses.replace(BASE, min_realism=0.0).filtering
    # fields added for hard examples leave a default config's settings (and so its digest) unchanged
    doc = build_document(corpus, checkpoint, BASE)
    assert "candidates" not in doc["config"] and "split_seed" not in doc["config"]
    more = build_document(corpus, checkpoint, dataclasses.replace(BASE, candidates=2))
    assert more["digest"] != doc["digest"]
    # a fixed split seed keeps the identity split while the clip seed changes
    a = build_document(corpus, checkpoint, dataclasses.replace(BASE, seed=1, split_seed=0))
    assert a["splits"] == doc["splits"] and a["plan"] != doc["plan"]


def test_filter_cost_benchmark_compares_plain_and_hard_builds(corpus, checkpoint):
    from benchmarks.speed.build import run_filter_cost

    r = run_filter_cost(corpus, checkpoint, identities=6, config=BASE, candidates=2, realism_quantile=0.5)
    assert r["plain"]["filter"] is None and r["plain"]["made"] == 12 and r["plain"]["filtered"] == 0
    f = r["hard"]["filter"]
    assert f["candidates_tried"] == 12 and f["planned_fakes"] == 6
    assert r["hard"]["made"] + r["hard"]["filtered"] == 12
    assert r["kept_share"] == pytest.approx(f["kept_fakes"] / 6, abs=1e-4)
    assert 0 <= r["acceptance_rate"] <= 1 and 0 <= r["extra_generation_share"] < 1
    assert r["wall_time_ratio"] > 0 and r["threshold"] is not None

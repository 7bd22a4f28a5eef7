"""The evidence streams, their stacked fusion, the out-of-fold calibration with condition buckets, and
the leave-one-method-out protocol, on synthetic tables with a known answer (no video decoding)."""

from __future__ import annotations

import numpy as np
import pytest

from detector.evidence.dynamics import FEATURES
from detector.evidence.stack import (
    StreamBundle,
    bucket_of,
    calibrate_buckets,
    fit_stack,
    group_folds,
)
from detector.protocol.lomo import LomoConfig, auc, bootstrap_interval, fit_bundle, run_lomo, window_table
from detector.protocol.table import AID, ClipRow, ClipSpec
from generator.errors import BadInputError

METHODS = {"alpha": ("one-image-animation", 2.5), "beta": ("face-swap", 1.5), "gamma": ("face-swap", 0.0)}


def _window(rng, fake: bool, shift: float, frames_shift: float) -> dict[str, float]:
    w = {f"dynamics:{f}": float(rng.normal()) for f in FEATURES}
    w["dynamics:bg_frozen_share"] += shift * fake  # the clue the dynamics model can learn
    p = 1 / (1 + np.exp(-(rng.normal() + frames_shift * fake)))
    w["frames:frame_prob_mean"] = p
    w["frames:logit"] = float(np.log(p / (1 - p)))
    return w


def _rows(seed: int = 0, reals: int = 30, per_method: int = 6, aids: int = 0) -> list[ClipRow]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(reals):
        spec = ClipSpec(f"real_{i}.mp4", 0, f"id{i}", "real", "")
        rows.append(ClipRow(spec, f"r{i}", [_window(rng, False, 0, 0) for _ in range(rng.integers(1, 4))],
                            float(rng.choice([80, 120, 200])), float(rng.choice([0.02, 0.1])), 6.0))
    for m, (family, shift) in METHODS.items():
        for j in range(per_method):
            spec = ClipSpec(f"{m}_{j}.mp4", 1, f"id{(j * 7) % reals}", m, family)
            rows.append(ClipRow(spec, f"{m}{j}", [_window(rng, True, shift, 1.0) for _ in range(2)],
                                150.0, 0.1, 6.0))
    for k in range(aids):
        spec = ClipSpec(f"aid_{k}.mp4", 1, f"id{k % reals}", "self_still_rigid", "self-made", AID)
        rows.append(ClipRow(spec, f"a{k}", [_window(rng, True, 3.0, 0.0)], 150.0, 0.1, 4.0))
    return rows


def test_auc_and_bootstrap_interval():
    assert auc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert auc(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0
    assert auc(np.array([0.5]), np.array([0.5])) == 0.5
    rng = np.random.default_rng(1)
    real, fake = rng.normal(0, 1, 40), rng.normal(1, 1, 40)
    lo, hi = bootstrap_interval(real, fake, 300, 0)
    assert lo < auc(real, fake) < hi and 0.5 < hi <= 1.0


def test_group_folds_keep_every_identity_in_one_fold():
    groups = np.array([f"id{i % 13}" for i in range(100)])
    folds = group_folds(groups, 5, seed=3)
    assert len(folds) == 5 and (np.sum(folds, axis=0) == 1).all()  # each row tested exactly once
    for test in folds:
        assert not set(groups[test]) & set(groups[~test])


def test_stack_learns_the_clues_and_survives_a_json_round_trip(tmp_path):
    rows = _rows()
    table = window_table(rows)
    stack = fit_stack(table, ["frames", "dynamics"])
    p = stack.predict(table)
    assert p[table.label == 1].mean() > p[table.label == 0].mean() + 0.2
    assert stack.models["dynamics"].coef[list(FEATURES).index("bg_frozen_share")] > 0
    assert set(stack.models) == {"dynamics"}  # frames is a fixed classifier's logit, not refitted
    from detector.evidence.calibration import calibrate

    bundle = StreamBundle(stack, calibrate(p[table.label == 0]), [], {"clips": len(rows)})
    bundle.save(tmp_path / "b.json")
    again = StreamBundle.load(tmp_path / "b.json")
    assert np.allclose(again.stack.predict(table), p)
    assert again.calibration == bundle.calibration
    with pytest.raises(BadInputError, match="not a sfumato stream bundle"):
        StreamBundle.load(tmp_path / "missing.json")


def test_made_fakes_alone_can_train_the_learned_streams():
    rows = _rows(aids=20)
    table = window_table(rows)
    made = fit_stack(table, ["dynamics"], streams_on="made")
    assert made.models["dynamics"].fitted_on["fake_windows"] == 20  # the 20 made fakes, no tool's fakes
    every = fit_stack(table, ["dynamics"], streams_on="all")
    assert every.models["dynamics"].fitted_on["fake_windows"] > 20
    with pytest.raises(BadInputError, match="streams_on"):
        fit_stack(table, ["dynamics"], streams_on="some")


def test_lomo_never_trains_on_the_method_or_people_it_tests(monkeypatch):
    import detector.protocol.lomo as lomo

    rows = _rows(aids=6)
    seen = []
    real_fit = lomo._fit_and_score

    def spy(table, train_clips, test_clips, config):
        seen.append((train_clips.copy(), test_clips.copy()))
        return real_fit(table, train_clips, test_clips, config)

    monkeypatch.setattr(lomo, "_fit_and_score", spy)
    res = run_lomo(rows, LomoConfig(bootstrap=50))
    assert [m.name for m in res.methods] == sorted(METHODS)
    assert len(seen) == 5 * (1 + len(METHODS))  # the all-methods pass, then one pass per held-out method
    for train, test in seen:
        train_methods = {rows[i].spec.method for i in train}
        test_fakes = {rows[i].spec.method for i in test if rows[i].spec.label == 1}
        assert not train_methods & test_fakes or len(test_fakes) > 1  # the held-out method never trains
        assert not {rows[i].spec.identity for i in train} & {rows[i].spec.identity for i in test}
        assert all(rows[i].spec.role != AID for i in test)  # made fakes are never tested
    for train, test in seen[5:]:
        held = {rows[i].spec.method for i in test if rows[i].spec.label == 1}
        assert len(held) <= 1 and not held & {rows[i].spec.method for i in train}


def test_lomo_tables_rank_the_easy_method_above_the_impossible_one():
    res = run_lomo(_rows(per_method=8), LomoConfig(bootstrap=100))
    by = {m.name: m for m in res.methods}
    assert by["alpha"].auc > 0.85 and by["alpha"].low <= by["alpha"].auc <= by["alpha"].high
    assert by["alpha"].auc > by["gamma"].auc
    assert {f.name for f in res.families} == {"one-image-animation", "face-swap"}
    assert res.real_clips == 30 and res.real_identities == 30 and len(res.real_scores) == 30
    assert 0 <= res.fpr_nested <= 0.25
    assert res.fpr_nested_widened <= res.fpr_nested  # widened buckets only ever raise the "fake" point
    assert all(b.fpr_widened <= b.fpr for b in res.fpr_buckets)
    assert {b.condition for b in res.fpr_buckets} == {"face", "bits", "length"}
    assert sum(b.real_clips for b in res.fpr_buckets if b.condition == "face") == 30
    assert res.to_dict()["methods"][0]["name"] == "alpha"


def test_out_of_fold_calibration_meets_its_rate_and_widens_a_bad_bucket():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 0.5, 100)
    conditions = [bucket_of(200.0, 0.1, 6.0) for _ in range(100)]
    for k in range(20):  # twenty small-face real clips that look fake to the model
        scores[k] = rng.uniform(0.6, 0.9)
        conditions[k] = bucket_of(80.0, 0.1, 6.0)
    cal, checks = calibrate_buckets(scores, conditions, 0.05, 0.05, "synthetic")
    assert cal.measured_fpr <= 0.05 and np.mean(scores >= cal.fake_from) <= 0.05
    small = next(c for c in checks if c.condition == "face" and c.bucket == "small")
    large = next(c for c in checks if c.condition == "face" and c.bucket == "large")
    assert small.real_clips == 20 and small.widened and small.measured_fpr > 0.05
    assert np.mean(scores[:20] >= small.fake_from) <= 0.05  # the bucket's own point meets the rate
    assert not large.widened and large.fake_from == cal.fake_from
    bundle = StreamBundle(None, cal, checks, {})
    point, hits = bundle.fake_from(bucket_of(80.0, 0.1, 6.0))
    assert point == small.fake_from and hits == [small]
    assert bundle.fake_from(bucket_of(200.0, 0.1, 6.0))[0] == cal.fake_from


def test_buckets_of_a_clip():
    assert bucket_of(50, 0.01, 2.0) == {"face": "small", "bits": "low", "length": "short"}
    assert bucket_of(120, 0.2, 10.0) == {"face": "medium", "bits": "high", "length": "long"}
    assert bucket_of(float("nan"), 0.0, 0.0) == {"face": "no face", "bits": "unknown", "length": "still"}


def test_fit_bundle_is_calibrated_on_every_real_identity():
    rows = _rows(aids=4)
    bundle = fit_bundle(rows, LomoConfig(bootstrap=0))
    assert bundle.calibration.real_videos == 30 and "30 identities" in bundle.calibration.set_on
    assert bundle.calibration.measured_fpr <= 0.05
    assert bundle.fitted_on["streams"] == ["frames", "dynamics"]
    frames_only = fit_bundle(rows, LomoConfig(streams=("frames",), bootstrap=0))
    assert frames_only.stack.streams == ["frames"]
    assert "dynamics" in frames_only.stack.models  # left out of the verdict, still scored for the analyst
    from detector.stacked import stream_set

    shown = stream_set(frames_only)
    assert [s.name for s in shown] == ["frames", "dynamics", "provenance"] and shown[1].model is not None


def test_streams_registry_and_provenance_rule():
    from detector.evidence.streams import create_stream, stream_names

    assert {"frames", "dynamics", "provenance"} <= set(stream_names())
    with pytest.raises(BadInputError, match="unknown evidence stream"):
        create_stream("tea-leaves")
    prov = create_stream("provenance")
    from detector.evidence.streams import WindowContext

    signed = {"state": "Trusted", "generation": {"generator": "sfumato"}}
    declared = prov.evaluate(WindowContext(None, signed))
    assert declared.probability > 0.999 and "declares" in declared.explanation
    absent = prov.evaluate(WindowContext(None, {"state": "Absent"}))
    assert absent.logit is None and "no evidence either way" in absent.explanation
    tampered = prov.evaluate(WindowContext(None, {"state": "Invalid"}))
    assert tampered.logit is None and "altered after signing" in tampered.explanation


def test_dynamics_explanation_states_what_was_measured_and_which_way_it_pushed():
    from detector.evidence.dynamics import DynamicsFacts
    from detector.evidence.fusion import FusionModel
    from detector.evidence.streams import create_stream

    coef = [0.0] * len(FEATURES)
    coef[list(FEATURES).index("bg_frozen_share")] = -2.0  # learnt: frozen backgrounds are common when real
    model = FusionModel(list(FEATURES), [0.5] * len(FEATURES), [0.25] * len(FEATURES), coef, 0.0)
    stream = create_stream("dynamics", model)
    facts = DynamicsFacts(20, 16, True, 13, 13, 3.4, 0.04, 200.0)
    features = {f: 0.5 for f in FEATURES} | {"bg_frozen_share": 1.0}
    text = stream.explain(features, facts, stream.score(features))
    assert "the background was frozen in 13 of the 13 pairs where the head moved" in text
    assert "the background stayed frozen while the head moved more often than usual (towards real)" in text
    assert stream.score(features) < 0
    low = stream.explain(features | {"bg_frozen_share": 0.0}, facts, None)
    assert "frozen while the head moved less often than usual (towards fake)" in low
    tight = DynamicsFacts(20, 16, False, 0, 13, 3.4, float("nan"), 200.0)
    assert "no background visible around the 200 px face" in stream.explain(features, tight, None)

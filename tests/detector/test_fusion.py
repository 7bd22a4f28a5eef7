"""Fusion beats each feature alone when each carries part of the signal; JSON round trip; realism
statistics; the realism scorer on detector samples."""

from __future__ import annotations

import numpy as np
import pytest

from detector.evidence.fusion import FusionModel, fit_fusion
from detector.evidence.realism import clip_statistics


def _case(n: int, seed: int) -> tuple[list[dict], np.ndarray]:
    # Two independent noisy witnesses of the same label: each alone is a fair detector, together better.
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    rows = [{"backbone": yi + rng.normal(0, 1.0), "realism": -yi + rng.normal(0, 1.0)} for yi in y]
    return rows, y


def test_fusion_beats_each_feature_alone():
    from sklearn.metrics import roc_auc_score

    train_rows, train_y = _case(600, 0)
    test_rows, test_y = _case(2000, 1)
    fused = fit_fusion(train_rows, train_y, ["backbone", "realism"])
    auc_fused = roc_auc_score(test_y, fused.predict(test_rows))
    auc_b = roc_auc_score(test_y, [r["backbone"] for r in test_rows])
    auc_r = roc_auc_score(test_y, [-r["realism"] for r in test_rows])
    assert auc_fused > max(auc_b, auc_r) + 0.03
    assert fused.coef[0] > 0 > fused.coef[1]  # a high backbone score and a low r both mean fake


def test_fusion_is_calibrated_on_its_own_kind_of_data():
    rows, y = _case(4000, 2)
    p = fit_fusion(rows, y, ["backbone", "realism"]).predict(rows)
    for lo, hi in ((0.1, 0.3), (0.4, 0.6), (0.7, 0.9)):
        sel = (p >= lo) & (p < hi)
        assert abs(y[sel].mean() - p[sel].mean()) < 0.05  # predicted and observed fake rates agree


def test_fusion_round_trips_and_treats_missing_features_as_no_evidence(tmp_path):
    rows, y = _case(300, 3)
    model = fit_fusion(rows, y, ["backbone", "realism"])
    model.save(tmp_path / "fusion.json")
    again = FusionModel.load(tmp_path / "fusion.json")
    np.testing.assert_allclose(again.predict(rows), model.predict(rows))
    only_backbone = again.predict([{"backbone": 3.0, "realism": float("nan")}])[0]
    assert only_backbone > 0.5
    with pytest.raises(Exception, match="not a sfumato fusion file"):
        FusionModel.load(tmp_path / "nothing.json")


def test_fusion_needs_both_classes():
    with pytest.raises(Exception, match="real and fake"):
        fit_fusion([{"a": 1.0}, {"a": 2.0}], [1, 1], ["a"])


def test_clip_statistics_ignore_frames_without_a_face():
    s = clip_statistics(np.array([1.0, np.nan, 3.0, 2.0]))
    assert s["mean"] == pytest.approx(2.0) and s["min"] == 1.0 and s["max"] == 3.0 and s["median"] == 2.0
    assert np.isnan(clip_statistics(np.array([np.nan]))["mean"])


def test_realism_scorer_on_samples(tiny_checkpoint, astronaut_clip):
    from detector.data.samples import sample_faces
    from detector.evidence.realism import RealismScorer

    scorer = RealismScorer(tiny_checkpoint, shots=2)
    samples = sample_faces(astronaut_clip, frames=3, realism_size=scorer.size)
    assert samples.found.all() and samples.crops.shape == (3, 256, 256, 3)
    r0 = scorer.scores(samples, "agnostic")
    r1 = scorer.scores(samples, "clip")
    assert r0.shape == r1.shape == (3,) and np.isfinite(r0).all() and np.isfinite(r1).all()
    samples.found[1] = False
    assert np.isnan(scorer.scores(samples)[1])


@pytest.mark.parametrize("r_informative", [True, False])
def test_realism_is_kept_in_the_verdict_only_where_it_helps(r_informative):
    from detector.data.schema import ClipRecord
    from detector.evaluate import realism_contribution

    rng = np.random.default_rng(3)
    feats, labels, rows = [], [], []
    for person in range(30):
        for comp in ("c23", "c40"):
            for y in (0, 1, 1):
                r = (-y if r_informative else 0) + rng.normal(0, 1.0)
                feats.append({"backbone_mean": 0.5 * y + rng.normal(0, 0.5), "realism_mean": r})
                labels.append(y)
                rows.append(ClipRecord(id=f"{person}{comp}{len(rows)}", clip_id="c",
                                       label="fake" if y else "real", split="val", method="self",
                                       source_identity=f"p{person}", driver_identity=f"p{person}",
                                       compression=comp))
    got = realism_contribution(feats, labels, rows)
    assert set(got["per_compression"]) == {"c23", "c40"} and got["folds"] == 5
    for v in got["per_compression"].values():
        assert v["delta"] == pytest.approx(v["fused_auc"] - v["backbone_auc"], abs=1e-3)
    assert got["kept"] is r_informative
    assert (got["mean_delta"] >= 0.02) if r_informative else (got["mean_delta"] < 0.02)

"""Detection metrics agree with scikit-learn, EER on a constructed case, video ids never merge."""

from __future__ import annotations

import numpy as np
import pytest

from detector.metrics import binary_metrics, detection_report, eer, video_scores


def test_metrics_agree_with_scikit_learn():
    from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = np.clip(0.3 * y + rng.normal(0.35, 0.2, 400), 0, 1)
    m = binary_metrics(y, s)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["ap"] == pytest.approx(average_precision_score(y, s))
    assert m["acc"] == pytest.approx(accuracy_score(y, s >= 0.5))
    assert m["n"] == 400 and m["fake"] == int(y.sum())


def test_eer_on_constructed_cases():
    # Reals at 0.1..0.4, fakes at 0.6..0.9: perfectly separable, EER 0.
    assert eer([0, 0, 0, 0, 1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]) == pytest.approx(0.0)
    # One real above one fake out of four each: at the crossing 1 of 4 of each is wrong -> 0.25.
    assert eer([0, 0, 0, 0, 1, 1, 1, 1], [0.1, 0.2, 0.3, 0.75, 0.6, 0.7, 0.8, 0.9]) == pytest.approx(0.25)
    # Scores that carry nothing: EER 0.5.
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 20000)
    assert eer(y, rng.random(20000)) == pytest.approx(0.5, abs=0.02)


def test_one_class_gives_no_auc_but_accuracy():
    m = binary_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert m["auc"] is None and m["eer"] is None and m["acc"] == pytest.approx(2 / 3)


def test_video_scores_are_means_keyed_by_unique_id():
    ids, y, s = video_scores(["a/0", "a/0", "b/0", "b/0"], [1, 1, 0, 0], [0.2, 0.4, 0.6, 0.8])
    assert ids == ["a/0", "b/0"] and list(y) == [1, 0] and np.allclose(s, [0.3, 0.7])
    # Same bare name "0" under two methods stays two videos when ids are unique.
    report = detection_report(["self/0", "self/0", "real/0", "real/0"], [1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2])
    assert report["video"]["n"] == 2 and report["video"]["auc"] == 1.0 and report["frame"]["n"] == 4


def test_a_merged_video_id_is_an_error():
    with pytest.raises(ValueError, match="not unique"):
        video_scores(["0", "0"], [1, 0], [0.5, 0.5])

"""The verdict threshold gives the stated false-positive rate on the real videos it was set on."""

from __future__ import annotations

import numpy as np
import pytest

from detector.evidence.calibration import calibrate
from detector.scan import FAKE, UNSURE, ScanConfig, verdict
from generator.errors import BadInputError


@pytest.mark.parametrize("fpr,n", [(0.05, 200), (0.1, 37), (0.05, 10), (0.2, 5)])
def test_threshold_gives_the_stated_rate_on_its_own_videos(fpr, n):
    scores = np.random.default_rng(n).beta(2, 5, n)
    cal = calibrate(scores, fpr)
    called = np.array([verdict(p, ScanConfig(threshold=cal.threshold, unsure_band=cal.unsure_band))
                       for p in scores])
    rate = np.mean(called == FAKE)
    assert rate <= fpr and rate == pytest.approx(cal.measured_fpr)
    assert rate > fpr - 1.0 / n - 1e-9  # as many as allowed, not needlessly fewer
    assert cal.fake_from == pytest.approx(cal.threshold + cal.unsure_band)
    assert verdict(cal.fake_from, ScanConfig(threshold=cal.threshold, unsure_band=cal.unsure_band)) == FAKE
    just_below = cal.fake_from - 1e-6
    assert verdict(just_below, ScanConfig(threshold=cal.threshold,
                                          unsure_band=cal.unsure_band)) in (UNSURE, "real")


def test_ties_and_bad_input():
    cal = calibrate([0.9] * 10, 0.05)
    assert cal.measured_fpr == 0 and cal.fake_from > 0.9
    with pytest.raises(BadInputError, match="at least one real video"):
        calibrate([], 0.05)
    with pytest.raises(BadInputError, match="false-positive rate"):
        calibrate([0.1, 0.2], 1.5)

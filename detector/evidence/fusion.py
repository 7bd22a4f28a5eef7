"""Fusion of the evidence per video: logistic regression on standardised features (the backbone's
frame-score statistics and the realism statistics), fitted on the validation split, so its output is
a calibrated probability of fake (for even prior odds). Stored as JSON (coefficients, no pickle), so
a fusion file can be read without running code from it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from generator.errors import BadInputError
from generator.io.files import write_bytes_atomic


@dataclasses.dataclass
class FusionModel:
    """p(fake | features) = sigmoid(coef . (f - mean) / scale + intercept), features by name."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    fitted_on: dict = dataclasses.field(default_factory=dict)

    def _matrix(self, rows: list[dict]) -> np.ndarray:
        x = np.array([[r.get(f, np.nan) for f in self.features] for r in rows], np.float64)
        # A missing feature (e.g. no face, so no realism) falls back to the training mean: no evidence.
        return np.where(np.isfinite(x), x, np.asarray(self.mean)[None])

    def predict(self, rows: list[dict]) -> np.ndarray:
        """Probability of fake per row of features."""
        z = (self._matrix(rows) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, atomically."""
        write_bytes_atomic(path, json.dumps(dataclasses.asdict(self), indent=1).encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> FusionModel:
        """Read a fusion JSON."""
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise BadInputError(f"{path}: not a sfumato fusion file ({exc})") from None


def fit_fusion(rows: list[dict], labels: list[int], features: list[str], c: float = 1.0) -> FusionModel:
    """Fit the logistic regression (L2, strength 1/c) on rows of named features and 0/1 labels.

    Classes are weighted to equal total weight, so the probability is calibrated for even odds of
    real and fake, not for the fitting split's ratio (a benchmark's 4 fakes per real clip would
    otherwise push every verdict towards fake).
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, int)
    if len(set(y.tolist())) < 2:
        raise BadInputError("fusion needs real and fake videos in its fitting split")
    x = np.array([[r.get(f, np.nan) for f in features] for r in rows], np.float64)
    mean = np.nanmean(np.where(np.isfinite(x), x, np.nan), axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    x = np.where(np.isfinite(x), x, mean[None])
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    lr = LogisticRegression(C=c, max_iter=1000, class_weight="balanced").fit((x - mean) / scale, y)
    return FusionModel(list(features), mean.tolist(), scale.tolist(), lr.coef_[0].tolist(),
                       float(lr.intercept_[0]), {"videos": int(len(y)), "fake": int(y.sum())})

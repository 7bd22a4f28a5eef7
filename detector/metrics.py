"""Detection metrics as DeepfakeBench reports them (detection.md): frame AUC, video AUC, EER, AP and
accuracy at 0.5, with videos keyed by a unique id (never by a folder name that could merge videos).

Labels: 1 = fake, 0 = real; scores: the probability of fake.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def eer(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Equal error rate: where the false-positive rate meets the false-negative rate on the ROC."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # rises from -1 to +1 along the curve
    k = int(np.argmax(diff >= 0))
    if k == 0:
        return float((fpr[0] + fnr[0]) / 2)
    # Interpolate linearly between the two ROC points around the crossing (threshold-free).
    t = diff[k - 1] / (diff[k - 1] - diff[k])
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def binary_metrics(labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5) -> dict:
    """AUC, EER, AP and accuracy at ``threshold``; AUC/EER/AP are None when one class is absent."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(labels, int)
    s = np.asarray(scores, float)
    out = {"n": int(len(y)), "fake": int(y.sum()), "real": int(len(y) - y.sum()),
           "acc": float(((s >= threshold) == y).mean()) if len(y) else None}
    if len(set(y.tolist())) < 2:
        return {**out, "auc": None, "eer": None, "ap": None}
    return {**out, "auc": float(roc_auc_score(y, s)), "eer": eer(y, s),
            "ap": float(average_precision_score(y, s))}


def video_scores(video_ids: Sequence[str], labels: Sequence[int], scores: Sequence[float]
                 ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per video: (ids, label, mean frame score); frames grouped by their video's unique id."""
    groups: dict[str, list[float]] = defaultdict(list)
    label: dict[str, int] = {}
    for v, y, s in zip(video_ids, labels, scores):
        if label.setdefault(v, int(y)) != int(y):
            raise ValueError(f"video {v!r} has frames of both labels: its id is not unique")
        groups[v].append(float(s))
    ids = sorted(groups)
    return ids, np.array([label[v] for v in ids]), np.array([np.mean(groups[v]) for v in ids])


def detection_report(video_ids: Sequence[str], labels: Sequence[int], scores: Sequence[float],
                     threshold: float = 0.5) -> dict:
    """Frame-level and video-level metrics of one set of frame scores."""
    _, vy, vs = video_scores(video_ids, labels, scores)
    return {"frame": binary_metrics(labels, scores, threshold), "video": binary_metrics(vy, vs, threshold)}

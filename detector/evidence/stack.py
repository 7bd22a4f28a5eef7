"""The stacked fusion of the evidence streams, calibrated on every real identity out of fold.

Fitting (``fit_stack``), on windows of clips labelled real / fake:
1. each learned stream's logistic regression on its own features (each clip weighs the same, however
   many windows it has; classes weigh the same);
2. the streams' out-of-fold logits (identity-grouped folds, so no window is scored by a model that saw
   its person), stacked by a second logistic regression on real clips and other tools' fakes (made
   fakes train only the streams): the fused probability of fake per window.
A file's probability is its most suspicious window's, so a fake stretch inside a long real video shows.

Calibration (``calibrate_buckets``): the threshold for a stated false-positive rate on out-of-fold real
clip scores, then checked per condition bucket (face size, bits per pixel, clip length); a bucket
with enough real clips where the rate is not met gets its own higher "fake from" point, so the unsure
band widens there, and scan says so. Everything is stored as JSON (no pickle).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from detector.evidence.calibration import Calibration, calibrate
from detector.evidence.fusion import FusionModel
from generator.errors import BadInputError
from generator.io.files import write_bytes_atomic

FACE_EDGES = (96.0, 160.0)  # px: small < 96 <= medium < 160 <= large (the buckets)
LOW_BPP = 0.05  # bits per pixel below this: "low" (the shared clips' median is about 0.1 at CRF 23)
SHORT_SECONDS = 4.0
MIN_BUCKET = 10  # real clips a bucket needs before its own rate is checked
STACK_C, STREAM_C = 1.0, 0.3  # L2 strengths, fixed before any protocol run (not tuned on it)


def bucket_of(face_px: float, bits_per_pixel: float, seconds: float) -> dict[str, str]:
    """The condition buckets of one clip."""
    if not np.isfinite(face_px):
        face = "no face"
    else:
        face = "small" if face_px < FACE_EDGES[0] else "medium" if face_px < FACE_EDGES[1] else "large"
    bpp = "unknown" if not np.isfinite(bits_per_pixel) or bits_per_pixel <= 0 else \
        "low" if bits_per_pixel < LOW_BPP else "high"
    length = "still" if not np.isfinite(seconds) or seconds <= 0 else \
        "short" if seconds < SHORT_SECONDS else "long"
    return {"face": face, "bits": bpp, "length": length}


def fit_logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, names: list[str], c: float) -> FusionModel:
    """A class-balanced, sample-weighted logistic regression on standardised columns (NaN: column mean)."""
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:
        raise BadInputError("fitting needs real and fake windows")
    mean = np.array([np.nanmean(col) if np.isfinite(col).any() else 0.0 for col in x.T])
    x = np.where(np.isfinite(x), x, mean[None])
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    w = weight * np.where(y == 1, 0.5 / weight[y == 1].sum(), 0.5 / weight[y == 0].sum()) * len(y)
    lr = LogisticRegression(C=c, max_iter=2000).fit((x - mean) / scale, y, sample_weight=w)
    return FusionModel(list(names), mean.tolist(), scale.tolist(), lr.coef_[0].tolist(),
                       float(lr.intercept_[0]), {"windows": int(len(y)), "fake_windows": int(y.sum())})


def _logit(model: FusionModel, x: np.ndarray) -> np.ndarray:
    mean, scale = np.asarray(model.mean), np.asarray(model.scale)
    x = np.where(np.isfinite(x), x, mean[None])
    return (x - mean) / scale @ np.asarray(model.coef) + model.intercept


@dataclasses.dataclass
class WindowTable:
    """Windows as arrays: features by column name, the clip each belongs to, its label and group."""

    columns: list[str]
    x: np.ndarray  # (W, F)
    clip: np.ndarray  # (W,) clip number
    label: np.ndarray  # (W,) 0 real / 1 fake
    group: np.ndarray  # (W,) identity
    aid: np.ndarray | None = None  # (W,) bool: a made training fake (``detector.data.clipfakes``)

    @classmethod
    def from_features(cls, windows: list[dict[str, float]], clip, label, group, aid=None) -> WindowTable:
        """Windows given as ``stream:feature`` dicts, with their clip, label, group (and aid) per window;
        a column a window lacks is NaN."""
        columns = sorted({k for w in windows for k in w})
        x = np.asarray([[w.get(c, np.nan) for c in columns] for w in windows], float)
        x = x.reshape(len(windows), len(columns))  # (0, F) too, when there are no windows
        return cls(columns, x, np.asarray(clip), np.asarray(label), np.asarray(group),
                   None if aid is None else np.asarray(aid, bool))

    def column(self, name: str) -> np.ndarray:
        """One column (NaN when the table lacks it)."""
        if name not in self.columns:
            return np.full(len(self.x), np.nan)
        return self.x[:, self.columns.index(name)]

    def take(self, keep: np.ndarray) -> WindowTable:
        """The rows where ``keep`` is True."""
        return WindowTable(self.columns, self.x[keep], self.clip[keep], self.label[keep], self.group[keep],
                           None if self.aid is None else self.aid[keep])

    def weights(self) -> np.ndarray:
        """1 / windows of the row's clip: every clip weighs the same."""
        _, inv, counts = np.unique(self.clip, return_inverse=True, return_counts=True)
        return 1.0 / counts[inv]


def stream_columns(table: WindowTable, stream: str, feature_names: tuple[str, ...]) -> np.ndarray:
    """The (W, F) matrix of one stream's features."""
    return np.stack([table.column(f"{stream}:{f}") for f in feature_names], axis=1)


def group_folds(groups: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """``k`` folds of whole groups (identities), shuffled by ``seed``: a list of boolean test masks."""
    names = np.array(sorted(set(groups.tolist())))
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    k = max(2, min(k, len(names)))
    return [np.isin(groups, names[i::k]) for i in range(k)]


@dataclasses.dataclass
class Stack:
    """Fitted stream models and the stacking regression over the streams' logits."""

    streams: list[str]  # the fused streams, in the stacking regression's column order
    models: dict[str, FusionModel]  # learned streams' own regressions
    fusion: FusionModel  # over ``<stream>:logit`` columns

    def stream_logits(self, table: WindowTable) -> dict[str, np.ndarray]:
        """Each fused stream's log-odds per window (learned streams through their model)."""
        from detector.evidence.streams import create_stream

        out = {}
        for name in self.streams:
            if name in self.models:
                m = self.models[name]
                out[name] = _logit(m, stream_columns(table, name, tuple(m.features)))
            else:
                out[name] = table.column(f"{name}:logit")
                if not np.isfinite(out[name]).any() and create_stream(name).learned:
                    raise BadInputError(f"stream {name} has neither a model nor logits in the table")
        return out

    def predict(self, table: WindowTable) -> np.ndarray:
        """Fused probability of fake per window."""
        logits = self.stream_logits(table)
        x = np.stack([logits[s] for s in self.streams], axis=1)
        return 1.0 / (1.0 + np.exp(-_logit(self.fusion, x)))

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"streams": self.streams, "models": {k: dataclasses.asdict(v) for k, v in self.models.items()},
                "fusion": dataclasses.asdict(self.fusion)}

    @classmethod
    def from_dict(cls, d: dict) -> Stack:
        """Read ``to_dict`` output."""
        return cls(list(d["streams"]), {k: FusionModel(**v) for k, v in d["models"].items()},
                   FusionModel(**d["fusion"]))


STREAMS_ON = ("all", "made")  # what learned streams fit on: every clip, or real clips and made fakes only


def _fit_on(table: WindowTable, streams_on: str) -> np.ndarray:
    """The windows learned streams fit on (see ``fit_stack``)."""
    if streams_on not in STREAMS_ON:
        raise BadInputError(f"streams_on is one of {', '.join(STREAMS_ON)}, not {streams_on!r}")
    if streams_on == "made":
        return (table.label == 0) | (table.aid if table.aid is not None else False)
    return np.ones(len(table.x), bool)


def fit_stream_model(table: WindowTable, name: str, streams_on: str = "all") -> FusionModel:
    """One learned stream's logistic regression on its own features (every clip weighs the same)."""
    from detector.evidence.streams import create_stream

    stream = create_stream(name)
    own, w = _fit_on(table, streams_on), table.weights()
    x = stream_columns(table, name, stream.feature_names)
    return fit_logistic(x[own], table.label[own], w[own], [*stream.feature_names], STREAM_C)


def fit_stack(table: WindowTable, streams: list[str], inner_folds: int = 3, seed: int = 0,
              streams_on: str = "all") -> Stack:
    """Fit the learned streams and the stacking regression on their out-of-fold logits (module docstring).

    ``streams_on="made"``: the learned streams see only real clips and made fakes (like self-blended
    images for the frame classifier), so no other tool's fakes shape them; the stack still weighs them
    on every clip."""
    from detector.evidence.streams import create_stream

    _fit_on(table, streams_on)  # a clear error for an unknown choice, before any fitting
    models, oof = {}, {}
    for name in streams:
        if not create_stream(name).learned:
            oof[name] = table.column(f"{name}:logit")
            continue
        models[name] = fit_stream_model(table, name, streams_on)
        got = np.full(len(table.x), np.nan)
        for test in group_folds(table.group, inner_folds, seed):
            train = table.take(~test)
            if len(set(train.label[_fit_on(train, streams_on)].tolist())) < 2:
                continue
            m = fit_stream_model(train, name, streams_on)
            got[test] = _logit(m, stream_columns(table, name, tuple(m.features))[test])
        oof[name] = got
    stacked = np.stack([oof[s] for s in streams], axis=1)
    # Made fakes train the streams built to see their trace, not the weights between streams: the
    # frame classifier rightly calls a real clip's own still frame real, and would be weighed down.
    tool = ~table.aid if table.aid is not None else np.ones(len(table.x), bool)
    fusion = fit_logistic(stacked[tool], table.label[tool], table.take(tool).weights(),
                          [f"{s}:logit" for s in streams], STACK_C)
    return Stack(list(streams), models, fusion)


def clip_scores(probabilities: np.ndarray, clip: np.ndarray) -> dict[int, float]:
    """A clip's probability of fake: its most suspicious window's."""
    out: dict[int, float] = {}
    for c, p in zip(clip.tolist(), probabilities.tolist()):
        out[c] = max(out.get(c, -1.0), p)
    return out


@dataclasses.dataclass(frozen=True)
class BucketCheck:
    """The stated rate checked on the real clips of one condition bucket."""

    condition: str  # face | bits | length
    bucket: str
    real_clips: int
    measured_fpr: float  # at the global "fake from" point
    fake_from: float  # the point used in this bucket (raised where the rate was missed)
    widened: bool


@dataclasses.dataclass
class StreamBundle:
    """What ``scan`` loads to fuse its streams: the stack, the calibration and its bucket checks."""

    stack: Stack
    calibration: Calibration
    buckets: list[BucketCheck]
    fitted_on: dict

    def fake_from(self, buckets: dict[str, str]) -> tuple[float, list[BucketCheck]]:
        """The "fake from" point for a clip in these buckets (the highest of its widened buckets)."""
        hits = [b for b in self.buckets if buckets.get(b.condition) == b.bucket and b.widened]
        return max([self.calibration.fake_from] + [b.fake_from for b in hits]), hits

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, atomically."""
        d = {"stack": self.stack.to_dict(), "calibration": self.calibration.to_dict(),
             "buckets": [dataclasses.asdict(b) for b in self.buckets], "fitted_on": self.fitted_on}
        write_bytes_atomic(path, json.dumps(d, indent=1).encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> StreamBundle:
        """Read a bundle JSON."""
        try:
            d = json.loads(Path(path).read_text())
            return cls(Stack.from_dict(d["stack"]), Calibration(**d["calibration"]),
                       [BucketCheck(**b) for b in d["buckets"]], d.get("fitted_on", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadInputError(f"{path}: not a sfumato stream bundle ({exc})") from None


def calibrate_buckets(real_scores: np.ndarray, conditions: list[dict[str, str]], fpr: float, band: float,
                      set_on: str) -> tuple[Calibration, list[BucketCheck]]:
    """The global calibration on out-of-fold real clip scores, and its check per condition bucket."""
    cal = calibrate(real_scores, fpr, band, set_on)
    checks = []
    for condition in ("face", "bits", "length"):
        for bucket in sorted({c[condition] for c in conditions}):
            s = np.asarray([v for v, c in zip(real_scores, conditions) if c[condition] == bucket], float)
            measured = float(np.mean(s >= cal.fake_from)) if len(s) else float("nan")
            widened = len(s) >= MIN_BUCKET and measured > fpr
            point = calibrate(s, fpr, 0.0).fake_from if widened else cal.fake_from
            checks.append(BucketCheck(condition, bucket, int(len(s)), measured, max(point, cal.fake_from),
                                      widened))
    return cal, checks

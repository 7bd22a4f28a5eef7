"""Leave-one-method-out (LOMO) with identity-grouped out-of-fold scores: how the stacked detector does
on generators it never saw, and how often it calls real people fake (``../shared/design/detection.md``).

For every method m and every identity fold k, the whole stack (streams and fusion) is fitted on the
clips that are neither of method m nor of fold k's people, and scores fold k's real clips and m's
fakes. So every fake is scored by a model that never saw its method or its person, and every real
clip by one that never saw its person. Per method: video AUC with a bootstrap 95% interval; per
family the same over its methods' fakes. The false-positive rate at the shipped threshold is measured
nested (the threshold set on the other folds' out-of-fold real scores, counted on this fold's), over
every real identity and per condition bucket. Model choices are fixed in code before a run
(``stack.STREAM_C`` ...): the protocol measures, it does not select.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from detector.evidence.calibration import DEFAULT_BAND, DEFAULT_FPR, calibrate
from detector.evidence.stack import (
    StreamBundle,
    WindowTable,
    bucket_of,
    calibrate_buckets,
    clip_scores,
    fit_stack,
    fit_stream_model,
    group_folds,
)
from detector.evidence.streams import create_stream, stream_names
from detector.protocol.table import AID, EVAL, ClipRow
from generator.errors import BadInputError


@dataclasses.dataclass(frozen=True)
class LomoConfig:
    """How to run the protocol."""

    streams: tuple[str, ...] = ("frames", "dynamics")
    streams_on: str = "all"  # learned streams fit on every clip, or on real clips and made fakes ("made")
    folds: int = 5  # identity folds
    fpr: float = DEFAULT_FPR
    band: float = DEFAULT_BAND
    bootstrap: int = 1000
    seed: int = 0


def window_table(rows: list[ClipRow]) -> WindowTable:
    """The clips' windows as one table (clip number = position in ``rows``)."""
    per_window = [(i, r, w) for i, r in enumerate(rows) for w in r.windows]
    if not per_window:
        raise BadInputError("no measured windows (every clip failed or had no frames)")
    return WindowTable.from_features([w for _, _, w in per_window], [i for i, _, _ in per_window],
                                     [r.spec.label for _, r, _ in per_window],
                                     [r.spec.identity for _, r, _ in per_window],
                                     [r.spec.role == AID for _, r, _ in per_window])


def auc(real: np.ndarray, fake: np.ndarray) -> float:
    """Probability that a fake outscores a real clip (ties count half): the ROC AUC."""
    real, fake = np.asarray(real, float), np.asarray(fake, float)
    if not len(real) or not len(fake):
        return float("nan")
    greater = (fake[:, None] > real[None]).mean()
    ties = (fake[:, None] == real[None]).mean()
    return float(greater + 0.5 * ties)


def bootstrap_interval(real: np.ndarray, fake: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of the AUC, resampling real and fake clips."""
    rng = np.random.default_rng(seed)
    real, fake = np.asarray(real, float), np.asarray(fake, float)
    if not len(real) or not len(fake) or n < 1:
        return float("nan"), float("nan")
    got = [auc(rng.choice(real, len(real)), rng.choice(fake, len(fake))) for _ in range(n)]
    return float(np.percentile(got, 2.5)), float(np.percentile(got, 97.5))


@dataclasses.dataclass(frozen=True)
class MethodResult:
    """One held-out method (or family): its fakes against the real clips."""

    name: str
    family: str
    fakes: int
    auc: float
    low: float
    high: float
    tpr: float  # share of its fakes at or above the shipped "fake from" point


@dataclasses.dataclass(frozen=True)
class BucketRate:
    """Nested out-of-fold false-positive rate of real clips in one condition bucket."""

    condition: str
    bucket: str
    real_clips: int
    fpr: float  # "fake" at the global point
    fpr_widened: float  # "fake" at the point scan uses: raised in buckets that missed the rate


@dataclasses.dataclass
class LomoResult:
    """The protocol's tables (``to_dict`` is lomo.json)."""

    streams: list[str]
    methods: list[MethodResult]
    families: list[MethodResult]
    mean_auc: float
    min_auc: float
    real_clips: int
    real_identities: int
    fpr_nested: float  # real clips called fake, threshold set without their fold
    fpr_nested_widened: float  # the same with the widened points of buckets that missed the rate
    fpr_buckets: list[BucketRate]
    folds_checked: bool  # every fit excluded its held-out method and fold (asserted while running)
    real_scores: dict[str, float]  # path -> out-of-fold score (all methods in training)
    fake_scores: dict[str, float]  # path -> LOMO score

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dataclasses.asdict(self)


def _fit_and_score(table: WindowTable, train_clips: np.ndarray, test_clips: np.ndarray,
                   config: LomoConfig) -> dict[int, float]:
    train = table.take(np.isin(table.clip, train_clips))
    test = table.take(np.isin(table.clip, test_clips))
    stack = fit_stack(train, list(config.streams), seed=config.seed, streams_on=config.streams_on)
    return clip_scores(stack.predict(test), test.clip)


def out_of_fold(rows: list[ClipRow], config: LomoConfig = LomoConfig(), exclude_method: str | None = None
                ) -> tuple[dict[int, float], list[np.ndarray]]:
    """Identity-grouped out-of-fold clip scores (clips of ``exclude_method`` never trained on or scored
    except as test fakes). Returns scores by clip number and the folds' test masks over clips."""
    table = window_table(rows)
    groups = np.asarray([r.spec.identity for r in rows])
    methods = np.asarray([r.spec.method for r in rows])
    roles = np.asarray([r.spec.role for r in rows])
    folds = group_folds(groups, config.folds, config.seed)
    scores: dict[int, float] = {}
    for test in folds:
        train_clips = np.flatnonzero(~test & (methods != exclude_method))
        test_clips = np.flatnonzero(test & (roles == EVAL) & (
            (methods == "real") | (methods == exclude_method if exclude_method else True)))
        if exclude_method is not None:
            assert not np.isin(methods[train_clips], [exclude_method]).any()
        assert not np.intersect1d(groups[train_clips], groups[test_clips]).size
        if len(test_clips):
            scores.update(_fit_and_score(table, train_clips, test_clips, config))
    return scores, folds


def run_lomo(rows: list[ClipRow], config: LomoConfig = LomoConfig(), progress: bool = False) -> LomoResult:
    """The protocol (see the module docstring)."""
    from tqdm import tqdm

    spec = [r.spec for r in rows]
    methods = sorted({s.method for s in spec if s.label == 1 and s.role == EVAL})
    if not methods or not any(s.label == 0 for s in spec):
        raise BadInputError("LOMO needs real clips and fakes of at least one method")
    real_idx = [i for i, s in enumerate(spec) if s.label == 0 and s.role != AID]
    oof, folds = out_of_fold(rows, config)
    real_oof = np.asarray([oof[i] for i in real_idx])
    cal = calibrate(real_oof, config.fpr, config.band)
    fake_scores: dict[int, float] = {}
    per_method_real: dict[str, np.ndarray] = {}
    for m in tqdm(methods, desc="lomo", unit="method", disable=not progress):
        got, _ = out_of_fold(rows, config, exclude_method=m)
        per_method_real[m] = np.asarray([got[i] for i in real_idx])
        fake_scores.update({i: got[i] for i, s in enumerate(spec) if s.method == m and i in got})
    results = []
    for m in methods:
        fakes = np.asarray([fake_scores[i] for i, s in enumerate(spec) if s.method == m and i in fake_scores])
        family = next(s.family for s in spec if s.method == m)
        lo, hi = bootstrap_interval(per_method_real[m], fakes, config.bootstrap, config.seed)
        results.append(MethodResult(m, family, len(fakes), auc(per_method_real[m], fakes), lo, hi,
                                    float(np.mean(fakes >= cal.fake_from))))
    families = []
    for fam in sorted({r.family for r in results}):
        ms = [r.name for r in results if r.family == fam]
        fakes = np.asarray([fake_scores[i] for i, s in enumerate(spec)
                            if s.method in ms and i in fake_scores])
        real = real_oof  # the all-methods out-of-fold scores: one model family per fold
        lo, hi = bootstrap_interval(real, fakes, config.bootstrap, config.seed)
        families.append(MethodResult(fam, fam, len(fakes), auc(real, fakes), lo, hi,
                                     float(np.mean(fakes >= cal.fake_from))))
    nested, nested_widened, buckets = _nested_fpr(rows, real_idx, oof, folds, config)
    aucs = [r.auc for r in results if np.isfinite(r.auc)]
    return LomoResult(list(config.streams), results, families, float(np.mean(aucs)), float(np.min(aucs)),
                      len(real_idx), len({spec[i].identity for i in real_idx}), nested, nested_widened,
                      buckets, True,
                      {spec[i].path: float(oof[i]) for i in real_idx},
                      {spec[i].path: float(v) for i, v in fake_scores.items()})


def _nested_fpr(rows: list[ClipRow], real_idx: list[int], oof: dict[int, float], folds: list[np.ndarray],
                config: LomoConfig) -> tuple[float, float, list[BucketRate]]:
    """Real clips called fake with the calibration set on the other folds: at its global point, and at
    the point scan uses for the clip's buckets (``StreamBundle.fake_from``)."""
    cond = {i: bucket_of(rows[i].face_px, rows[i].bits_per_pixel, rows[i].seconds) for i in real_idx}
    called, widened = {}, {}
    for test in folds:
        inside = [i for i in real_idx if test[i]]
        outside = [i for i in real_idx if not test[i]]
        if not inside or not outside:
            continue
        cal, checks = calibrate_buckets(np.asarray([oof[i] for i in outside]), [cond[i] for i in outside],
                                        config.fpr, config.band, "")
        bundle = StreamBundle(None, cal, checks, {})
        called.update({i: oof[i] >= cal.fake_from for i in inside})
        widened.update({i: oof[i] >= bundle.fake_from(cond[i])[0] for i in inside})
    rates = []
    for condition in ("face", "bits", "length"):
        for bucket in sorted({cond[i][condition] for i in called}):
            members = [i for i in called if cond[i][condition] == bucket]
            rates.append(BucketRate(condition, bucket, len(members),
                                    float(np.mean([called[i] for i in members])),
                                    float(np.mean([widened[i] for i in members]))))
    return float(np.mean(list(called.values()))), float(np.mean(list(widened.values()))), rates


def fit_bundle(rows: list[ClipRow], config: LomoConfig = LomoConfig()) -> StreamBundle:
    """The shipped bundle: the stack fitted on every clip, calibrated on every real identity's
    out-of-fold score, with its bucket checks."""
    table = window_table(rows)
    stack = fit_stack(table, list(config.streams), seed=config.seed, streams_on=config.streams_on)
    for name in stream_names():  # streams left out of the fusion are still shown, with their own score
        if name not in stack.models and create_stream(name).learned and name not in stack.streams:
            stack.models[name] = fit_stream_model(table, name, config.streams_on)
    oof, _ = out_of_fold(rows, config)
    real_idx = [i for i, r in enumerate(rows) if r.spec.label == 0 and r.spec.role != AID]
    scores = np.asarray([oof[i] for i in real_idx])
    conditions = [bucket_of(rows[i].face_px, rows[i].bits_per_pixel, rows[i].seconds) for i in real_idx]
    cal, buckets = calibrate_buckets(scores, conditions, config.fpr, config.band,
                                     f"out-of-fold scores of {len(real_idx)} real clips, "
                                     f"{len({rows[i].spec.identity for i in real_idx})} identities "
                                     f"({config.folds} identity folds)")
    methods = sorted({r.spec.method for r in rows})
    return StreamBundle(stack, cal, buckets, {"clips": len(rows), "methods": methods,
                                              "streams": list(config.streams),
                                              "streams_on": config.streams_on})


def single_stream_aucs(rows: list[ClipRow], column: str) -> dict[str, float]:
    """Per method, the AUC of one fixed column's clip score (max over windows), e.g. the frame
    classifier's ``frames:logit``, against every real clip: the unlearned baseline beside the stack."""
    real = np.asarray([np.nanmax([w.get(column, np.nan) for w in r.windows] or [np.nan]) for r in rows
                       if r.spec.label == 0 and r.spec.role != AID])
    out = {}
    for m in sorted({r.spec.method for r in rows if r.spec.label == 1 and r.spec.role == EVAL}):
        fakes = np.asarray([np.nanmax([w.get(column, np.nan) for w in r.windows] or [np.nan])
                            for r in rows if r.spec.method == m])
        out[m] = auc(real[np.isfinite(real)], fakes[np.isfinite(fakes)])
    return out


def cross_scores(train: list[ClipRow], test: list[ClipRow], config: LomoConfig = LomoConfig()
                 ) -> dict[str, float]:
    """Scores of ``test`` clips by stacks fitted on ``train`` without the test clip's identity fold
    (every method in training): in-domain numbers, e.g. sfumato's fakes and real clips at c40."""
    groups = np.asarray([r.spec.identity for r in train])
    names = sorted(set(groups.tolist()))
    folds = group_folds(np.asarray(names), config.folds, config.seed)
    out: dict[str, float] = {}
    table = window_table(train)
    for test_names in folds:
        held = set(np.asarray(names)[test_names].tolist())
        fit_on = np.flatnonzero([g not in held for g in groups])
        todo = [r for r in test if r.spec.identity in held]
        if not todo:
            continue
        stack = fit_stack(table.take(np.isin(table.clip, fit_on)), list(config.streams), seed=config.seed,
                          streams_on=config.streams_on)
        t = window_table(todo)
        out.update({todo[c].spec.path: p for c, p in clip_scores(stack.predict(t), t.clip).items()})
    return out

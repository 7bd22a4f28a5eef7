"""``sfumato detect eval`` and the fusion fit: the detector on any dataset in sfumato's metadata format
(built, perturbed or imported), for three methods side by side:

- backbone: the timm model's frame probabilities (video score = their mean, as DeepfakeBench);
- realism: the generator discriminator's r alone (frame score -r; video probability from a
  logistic fit of the realism statistics on val);
- fused: logistic regression on backbone and realism statistics, fitted on val.

Metrics (frame AUC, video AUC, EER, AP, accuracy at 0.5) overall, per compression level and per
perturbation; ROC curves as PNG; everything in one JSON and a markdown table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from detector.data.schema import ClipRecord, read_metadata
from detector.evidence.calibration import DEFAULT_FPR, Calibration
from detector.evidence.features import FUSION_FEATURES, REALISM_FUSION_FEATURES, Evidence, evidence
from detector.evidence.fusion import FusionModel, fit_fusion
from detector.evidence.realism import load_realism
from detector.metrics import binary_metrics, detection_report
from generator.errors import BadInputError
from generator.io.files import sha256_file, write_bytes_atomic

BACKBONE_ONLY = ("backbone_mean",)  # the fusion when r does not help: a calibration of the backbone
METHODS = ("backbone", "realism", "fused", "fused+r")  # fused+r: only when the verdict's fusion left r out


def dataset_rows(dataset: str | os.PathLike, split: str | None, with_perturbed: bool = True
                 ) -> list[tuple[Path, ClipRecord]]:
    """(folder the row's path is relative to, row) of a dataset and of its perturbed copies."""
    root = Path(dataset)
    folders = [root] + (sorted(p.parent for p in root.glob("perturbed/*/metadata.jsonl"))
                        if with_perturbed else [])
    out = [(f, r) for f in folders for r in read_metadata(f) if split is None or r.split == split]
    if not out:
        raise BadInputError(f"{dataset}: no rows{f' in split {split!r}' if split else ''}")
    return out


class EvidenceSource:
    """Face samples (cached beside each dataset) -> evidence, with one dlib backend loaded on demand."""

    def __init__(self, model, realism=None, frames: int = 32, identity: str = "agnostic"):
        self.model, self.realism, self.frames, self.identity = model, realism, frames, identity
        self._backend = None

    def __call__(self, folder: Path, row: ClipRecord) -> Evidence:
        """Evidence of one row (its file resolved against ``folder``)."""
        from detector.data.samples import CACHE_DIR, cached_faces, sample_key
        from generator.faces.backends import create_backend
        from generator.faces.crop import DETECTOR_CROP

        rsize = self.realism.size if self.realism is not None else None
        size = self.model.input_size  # cut at the size it was trained at, as in training
        key = sample_key(row, self.frames, size, rsize)
        cache = folder / CACHE_DIR
        if self._backend is None and not (cache / f"{key}.npz").is_file():
            self._backend = create_backend("dlib")
        samples = cached_faces(row.resolve(folder), cache, key, self.frames, self._backend,
                               dataclasses.replace(DETECTOR_CROP, size=size), realism_size=rsize)
        return evidence(samples, self.model, self.realism, self.identity)


def fit_detector_fusion(dataset: str | os.PathLike, detector: str | os.PathLike, out: str | os.PathLike,
                        generator: str | os.PathLike | None = None, split: str = "val", frames: int = 32,
                        identity: str = "agnostic", progress: bool = False,
                        fpr: float = DEFAULT_FPR) -> FusionFit:
    """Fit the fused and realism-only models on ``split`` and write the detector with them to ``out``,
    with the verdict threshold calibrated for false-positive rate ``fpr`` on the split's real videos."""
    from tqdm import tqdm

    from detector.evidence.calibration import calibrate
    from detector.model import load_detector, save_detector

    model, meta = load_detector(detector)
    realism = load_realism({}, generator)
    source = EvidenceSource(model, realism, frames, identity)
    rows = dataset_rows(dataset, split, with_perturbed=False)  # every compression: calibrated on all
    feats, labels, kept = [], [], []
    for folder, row in tqdm(rows, desc="fusion", unit="video", disable=not progress):
        ev = source(folder, row)
        if ev.found.any():
            feats.append(ev.features)
            labels.append(int(row.label == "fake"))
            kept.append(row)
    with_r = fit_fusion(feats, labels, list(FUSION_FEATURES))
    realism_only = fit_fusion(feats, labels, list(REALISM_FUSION_FEATURES))
    choice = realism_contribution(feats, labels, kept)
    # r stays in the verdict only where it was measured to help (held-out folds of this split)
    fused = with_r if choice["kept"] else fit_fusion(feats, labels, list(BACKBONE_ONLY))
    # scan's verdict threshold: at most `fpr` of this split's real videos called fake
    real = [f for f, y in zip(feats, labels) if y == 0]
    cal = calibrate(fused.predict(real), fpr, set_on=f"{dataset} ({split}, real videos)")
    meta = {**meta, "fusion": dataclasses.asdict(fused), "realism_fusion": dataclasses.asdict(realism_only),
            "fusion_with_realism": dataclasses.asdict(with_r), "realism_contribution": choice,
            "realism": {**realism.info, "identity": identity}, "eval_frames": frames,
            "calibration": cal.to_dict(),
            "fusion_fitted_on": {"dataset": str(dataset), "split": split, "videos": len(labels)}}
    meta.pop("optimizers", None)
    save_detector(out, model, meta)
    return FusionFit(str(out), len(labels), int(sum(labels)), cal, dict(zip(fused.features, fused.coef)),
                     choice, dict(zip(REALISM_FUSION_FEATURES, realism_only.coef)))


@dataclasses.dataclass(frozen=True)
class FusionFit:
    """What ``fit_detector_fusion`` fitted and wrote (``detect fuse``; ``fusion`` of ``detect train``)."""

    out: str  # the detector file written
    videos: int  # videos of the split with a face, fitted on
    fake: int
    calibration: Calibration
    fused_coef: dict[str, float]  # per feature of the verdict's fusion
    realism_contribution: dict  # realism_contribution(): whether r stayed in the verdict, per compression
    realism_coef: dict[str, float]

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"out": self.out, "videos": self.videos, "fake": self.fake,
                "calibration": self.calibration.to_dict(), "fused_coef": self.fused_coef,
                "realism_contribution": self.realism_contribution, "realism_coef": self.realism_coef}


def realism_contribution(feats: list[dict], labels: list[int], rows: list[ClipRecord],
                         folds: int = 5, margin: float = 0.02) -> dict:
    """Fused AUC minus backbone AUC per compression, from out-of-fold predictions (folds by person).

    r is kept when it raises the mean over levels by at least ``margin`` and lowers none by more
    than 0.02: a witness that helps only in-sample would be fitted noise.
    """
    from sklearn.model_selection import GroupKFold

    groups = np.array([r.source_identity for r in rows])
    y = np.asarray(labels)
    k = min(folds, len(set(groups.tolist())))
    oof = {name: np.full(len(y), np.nan) for name in ("backbone", "fused")}
    if k >= 2:
        for tr, te in GroupKFold(n_splits=k).split(np.zeros(len(y)), y, groups):
            if len(set(y[tr].tolist())) < 2:
                continue
            for name, cols in (("backbone", BACKBONE_ONLY), ("fused", FUSION_FEATURES)):
                m = fit_fusion([feats[i] for i in tr], y[tr].tolist(), list(cols))
                oof[name][te] = m.predict([feats[i] for i in te])
    per = {}
    for comp in sorted({r.compression for r in rows}):
        sel = np.array([r.compression == comp for r in rows]) & np.isfinite(oof["fused"])
        if len(set(y[sel].tolist())) < 2:
            continue
        b = binary_metrics(y[sel].tolist(), oof["backbone"][sel].tolist())["auc"]
        f = binary_metrics(y[sel].tolist(), oof["fused"][sel].tolist())["auc"]
        per[comp] = {"backbone_auc": round(b, 4), "fused_auc": round(f, 4), "delta": round(f - b, 4)}
    deltas = [v["delta"] for v in per.values()]
    kept = bool(deltas) and float(np.mean(deltas)) >= margin and min(deltas) > -0.02
    return {"per_compression": per, "mean_delta": round(float(np.mean(deltas)), 4) if deltas else None,
            "kept": kept, "folds": k, "rule": f"mean delta >= {margin} and none below -0.02 "
            "(out-of-fold on the fitting split, folds by person)"}


def evaluate(dataset: str | os.PathLike, detector: str | os.PathLike, out: str | os.PathLike,
             split: str = "test", generator: str | os.PathLike | None = None, frames: int | None = None,
             with_perturbed: bool = True, progress: bool = False,
             other_fakes: str | os.PathLike | None = None) -> EvalResult:
    """Evaluate on ``split`` of ``dataset`` (and its perturbed copies); writes eval.json, eval.md, roc.png.

    ``other_fakes``: also score other generators' fakes against this split's real c23 videos
    (``generalisation``)."""
    from tqdm import tqdm

    from detector.model import load_detector

    t0 = time.perf_counter()
    model, meta = load_detector(detector)
    fused = FusionModel(**meta["fusion"]) if meta.get("fusion") else None
    r_only = FusionModel(**meta["realism_fusion"]) if meta.get("realism_fusion") else None
    # the fit with r, reported beside the verdict's fusion when that one left r out
    with_r = (FusionModel(**meta["fusion_with_realism"])
              if meta.get("fusion_with_realism") and fused is not None
              and "realism_mean" not in fused.features else None)
    realism = load_realism(meta, generator) if fused is not None or generator is not None else None
    frames = frames or int(meta.get("eval_frames", 32))
    source = EvidenceSource(model, realism, frames, (meta.get("realism") or {}).get("identity", "agnostic"))
    rows = dataset_rows(dataset, split, with_perturbed)
    per_video, failed = [], []
    for folder, row in tqdm(rows, desc="eval", unit="video", disable=not progress):
        try:
            ev = source(folder, row)
        except Exception as exc:  # an unreadable file is reported, the rest go on
            failed.append({"id": row.id, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if not ev.found.any():
            failed.append({"id": row.id, "error": "no face in any sampled frame"})
            continue
        per_video.append({"row": row, "ev": ev,
                          "fused": float(fused.predict([ev.features])[0]) if fused else None,
                          "realism_p": float(r_only.predict([ev.features])[0]) if r_only else None,
                          "fused_r": float(with_r.predict([ev.features])[0]) if with_r else None})
    if not per_video:
        raise BadInputError(f"{dataset}: no video of split {split!r} could be scored ({len(failed)} failed)")
    groups: dict[str, list[dict]] = defaultdict(list)
    for v in per_video:
        r = v["row"]
        groups["all"].append(v)
        groups[f"compression={r.compression}"].append(v)
        groups[f"perturbation={r.perturbation}"].append(v)
    table = {name: _group_metrics(vs) for name, vs in sorted(groups.items())}
    seconds = time.perf_counter() - t0
    result = EvalResult(
        str(dataset), split, str(detector), sha256_file(detector), meta["backbone"], meta.get("realism"),
        frames, len(per_video), failed, table, round(seconds, 2),
        round(60 * (len(per_video) + len(failed)) / max(seconds, 1e-9), 2),
        [{"id": v["row"].id, "label": v["row"].label, "compression": v["row"].compression,
          "perturbation": v["row"].perturbation, "fused": v["fused"], **v["ev"].to_dict()}
         for v in per_video])
    if other_fakes is not None:
        result.generalisation = generalisation(dataset, other_fakes, detector, (split,), "c23",
                                               generator, frames, progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "eval.json", json.dumps(result.to_dict(), indent=1).encode())
    write_bytes_atomic(out / "eval.md", markdown(result).encode())
    write_roc(out / "roc.png", per_video)
    return result


@dataclasses.dataclass
class EvalResult:
    """What ``evaluate`` measured (eval.json; ``detect eval --json`` without ``per_video``)."""

    dataset: str
    split: str
    detector: str
    detector_sha256: str
    backbone: str
    realism: dict | None  # the realism checkpoint the detector's fusion was fitted with
    frames: int
    videos: int  # scored
    failed: list[dict]  # id and error of each video not scored
    # group ("all", "compression=c23", "perturbation=none", ...) -> method -> frame / video metrics
    metrics: dict[str, dict]
    seconds: float
    videos_per_minute: float
    per_video: list[dict]  # id, label, compression, perturbation, fused and the evidence of each video
    generalisation: dict | None = None  # other generators' fakes (``other_fakes``), when given

    def to_dict(self) -> dict:
        """JSON-ready (``generalisation`` only when measured)."""
        out = {"dataset": self.dataset, "split": self.split, "detector": self.detector,
               "detector_sha256": self.detector_sha256, "backbone": self.backbone, "realism": self.realism,
               "frames": self.frames, "videos": self.videos, "failed": self.failed, "metrics": self.metrics,
               "seconds": self.seconds, "videos_per_minute": self.videos_per_minute,
               "per_video": self.per_video}
        if self.generalisation is not None:
            out["generalisation"] = self.generalisation
        return out


def generalisation(dataset: str | os.PathLike, fakes: str | os.PathLike, detector: str | os.PathLike,
                   splits: tuple[str, ...] = ("test",), compression: str = "c23",
                   generator: str | os.PathLike | None = None, frames: int | None = None,
                   progress: bool = False) -> dict:
    """Other generators' fakes (a dataset such as ``dataset import --label fake`` of fakes_dev) against
    ``dataset``'s real videos of ``splits`` at ``compression``: video AUC per method, the share of
    fakes caught and of real videos called fake at the detector's verdict threshold, per clip."""
    from tqdm import tqdm

    from detector.evidence.calibration import calibration_from
    from detector.model import load_detector

    model, meta = load_detector(detector)
    fused = FusionModel(**meta["fusion"]) if meta.get("fusion") else None
    uses_r = fused is not None and any(f.startswith("realism") for f in fused.features)
    realism = load_realism(meta, generator) if uses_r else None
    source = EvidenceSource(model, realism, frames or int(meta.get("eval_frames", 32)),
                            (meta.get("realism") or {}).get("identity", "agnostic"))
    real = [(f, r) for f, r in dataset_rows(dataset, None, with_perturbed=False)
            if r.label == "real" and r.split in splits and r.compression == compression]
    fake = [(Path(fakes), r) for r in read_metadata(fakes) if r.label == "fake"]
    if not real or not fake:
        raise BadInputError(f"need real videos ({dataset}, {'/'.join(splits)}, {compression}: {len(real)}) "
                            f"and fakes ({fakes}: {len(fake)})")
    cal = calibration_from(meta)
    threshold = cal.threshold if cal else 0.5
    clips, failed = [], []
    for folder, row in tqdm(real + fake, desc="generalisation", unit="video", disable=not progress):
        ev = source(folder, row)
        if not ev.found.any():
            failed.append(row.id)
            continue
        backbone = ev.features["backbone_mean"]
        p = float(fused.predict([ev.features])[0]) if fused else backbone
        clips.append({"id": row.id, "label": row.label, "method": row.method, "backbone": round(backbone, 5),
                      "probability_fake": round(p, 5), "called_fake": p >= threshold})
    y = [int(c["label"] == "fake") for c in clips]

    def summary(cs: list[dict]) -> dict:
        yy = [int(c["label"] == "fake") for c in cs]
        return {"backbone_auc": binary_metrics(yy, [c["backbone"] for c in cs])["auc"],
                "auc": binary_metrics(yy, [c["probability_fake"] for c in cs])["auc"],
                "caught": round(float(np.mean([c["called_fake"] for c in cs if c["label"] == "fake"])), 4),
                "fakes": sum(yy)}

    reals = [c for c in clips if c["label"] == "real"]
    per_method = {m: summary(reals + [c for c in clips if c["method"] == m])
                  for m in sorted({c["method"] for c in clips if c["label"] == "fake"})}
    return {"dataset": str(dataset), "fakes": str(fakes), "splits": list(splits), "compression": compression,
            "threshold": threshold, "calibrated": cal is not None, "real_videos": len(reals),
            "fake_videos": sum(y), **summary(clips),
            "false_positive_rate": round(float(np.mean([c["called_fake"] for c in reals])), 4),
            "per_method": per_method, "not_scored": failed, "clips": clips}


def _method_scores(vs: list[dict]) -> dict[str, tuple]:
    """Per method: (frame ids, frame labels, frame scores) and (video labels, video scores)."""
    out = {}
    f_ids, f_y, f_b, f_r = [], [], [], []
    for v in vs:
        ok = v["ev"].found
        y = int(v["row"].label == "fake")
        f_ids += [v["row"].id] * int(ok.sum())
        f_y += [y] * int(ok.sum())
        f_b += list(v["ev"].probs[ok])
        f_r += list(-v["ev"].realism[ok])
    vy = [int(v["row"].label == "fake") for v in vs]
    out["backbone"] = ((f_ids, f_y, f_b), (vy, [v["ev"].features["backbone_mean"] for v in vs]))
    if all(np.isfinite(f_r)) and vs[0]["realism_p"] is not None:
        out["realism"] = ((f_ids, f_y, f_r), (vy, [v["realism_p"] for v in vs]))
    if vs[0]["fused"] is not None:
        out["fused"] = (None, (vy, [v["fused"] for v in vs]))
    if vs[0].get("fused_r") is not None:
        out["fused+r"] = (None, (vy, [v["fused_r"] for v in vs]))
    return out


def _group_metrics(vs: list[dict]) -> dict:
    res = {}
    for method, (frame, video) in _method_scores(vs).items():
        entry = {"video": binary_metrics(*video)}
        if frame is not None:
            entry["frame"] = detection_report(*frame)["frame"]
            if method == "realism":
                entry["frame"]["acc"] = None  # -r is a score, not a probability
        res[method] = entry
    return res


def markdown(result: EvalResult) -> str:
    """The metrics as a markdown table."""
    lines = [f"# Detector evaluation: {result.dataset} ({result.split}, {result.videos} videos)", "",
             f"Backbone {result.backbone}; realism from "
             f"{(result.realism or {}).get('checkpoint', 'none')}.", "",
             "| group | method | frame AUC | video AUC | video EER | video AP | video acc@0.5 | videos |",
             "|---|---|---|---|---|---|---|---|"]

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    for group, methods in result.metrics.items():
        for m, e in methods.items():
            v = e["video"]
            lines.append(f"| {group} | {m} | {f(e.get('frame', {}).get('auc'))} | {f(v['auc'])} | "
                         f"{f(v['eer'])} | {f(v['ap'])} | {f(v['acc'])} | {v['n']} |")
    g = result.generalisation
    if g:
        lines += ["", f"## Other generators: {g['fake_videos']} fakes ({g['fakes']}) against "
                  f"{g['real_videos']} real {g['compression']} videos", "",
                  f"Video AUC {f(g['auc'])} (backbone alone {f(g['backbone_auc'])}); at the verdict "
                  f"threshold {g['threshold']:.3f}{'' if g['calibrated'] else ' (not calibrated)'}: "
                  f"{g['caught']:.0%} of the fakes caught, {g['false_positive_rate']:.0%} of the real "
                  "videos called fake.", "",
                  "| method | fakes | AUC | caught |", "|---|---|---|---|"]
        lines += [f"| {m} | {v['fakes']} | {f(v['auc'])} | {v['caught']:.0%} |"
                  for m, v in g["per_method"].items()]
    if result.failed:
        lines += ["", "Not scored: " + "; ".join(f"{x['id']} ({x['error']})" for x in result.failed)]
    return "\n".join(lines) + "\n"


def write_roc(path: Path, per_video: list[dict]) -> None:
    """Video-level ROC curves of each method, one panel per compression level."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    comps = sorted({v["row"].compression for v in per_video if v["row"].perturbation == "none"}) or ["all"]
    fig, axes = plt.subplots(1, len(comps), figsize=(4 * len(comps), 3.8), squeeze=False)
    for ax, comp in zip(axes[0], comps):
        vs = [v for v in per_video
              if v["row"].perturbation == "none" and comp in ("all", v["row"].compression)]
        for method, (_, (y, s)) in _method_scores(vs).items() if vs else []:
            if len(set(y)) == 2:
                fpr, tpr, _ = roc_curve(y, s)
                ax.plot(fpr, tpr, label=f"{method} (AUC {binary_metrics(y, s)['auc']:.3f})")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set_title(f"{comp}: video-level ROC")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
        else:  # one class only at this level: no curve to draw
            ax.text(0.5, 0.5, "only one class here", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())

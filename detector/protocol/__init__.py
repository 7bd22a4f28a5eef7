"""The detector's evaluation protocol: leave-one-method-out over other tools' fakes, identity-grouped
out-of-fold scores and calibration on every real identity (``sfumato detect lomo``)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from detector.protocol.lomo import (
    LomoConfig,
    LomoResult,
    auc,
    cross_scores,
    fit_bundle,
    run_lomo,
    single_stream_aucs,
)
from detector.protocol.table import (
    AID,
    SFUMATO,
    ClipRow,
    ClipSpec,
    made_fake_specs,
    measure_table,
    recompressed_specs,
    shared_specs,
)

# The variants the protocol measures (stream set, what learned streams fit on), fixed before any run.
# The bundle ships the one with the highest mean LOMO AUC (the earlier one on a tie): selection by
# this protocol, never by one split; its own LOMO figure is then slightly optimistic, and said so.
VARIANTS = {
    "frames+dynamics": (("frames", "dynamics"), "all"),
    "frames+dynamics(made)": (("frames", "dynamics"), "made"),
    "frames": (("frames",), "all"),
    "dynamics": (("dynamics",), "all"),
    "dynamics(made)": (("dynamics",), "made"),
}


@dataclasses.dataclass
class ProtocolResult:
    """What ``run_protocol`` measured and wrote."""

    results: dict[str, LomoResult]  # per variant ("frames+dynamics", ...)
    chosen: str  # the variant the bundle ships
    baselines: dict[str, dict[str, float]]
    in_domain: dict[str, dict[str, float]]  # per level: sfumato's fakes against real clips, 4 s each
    clips: int
    files: list[str]
    bundle: str | None  # the fitted bundle's path, when asked for

    def to_dict(self) -> dict:
        """JSON-ready summary (lomo.json holds the full tables)."""
        return {"clips": self.clips, "files": self.files, "bundle": self.bundle, "chosen": self.chosen,
                "mean_auc": {k: round(r.mean_auc, 4) for k, r in self.results.items()},
                "min_auc": {k: round(r.min_auc, 4) for k, r in self.results.items()},
                "fpr_nested": {k: round(r.fpr_nested, 4) for k, r in self.results.items()},
                "fpr_nested_widened": {k: round(r.fpr_nested_widened, 4) for k, r in self.results.items()},
                "in_domain": self.in_domain}


def run_protocol(data_dir: str | os.PathLike, out: str | os.PathLike,
                 made_fakes: str | os.PathLike | None = None,
                 detector: str | os.PathLike | None = None, fit: str | os.PathLike | None = None,
                 config: LomoConfig = LomoConfig(), progress: bool = False) -> ProtocolResult:
    """Measure every clip, run LOMO for each stream set, write the tables and plots into ``out``, and
    (``fit``) write the bundle scan ships: the stack fitted on everything, calibrated out of fold."""
    from detector.protocol.report import write_lomo
    from detector.scan import BUNDLED_DETECTOR
    from generator.io.files import sha256_file

    specs = shared_specs(data_dir) + (made_fake_specs(made_fakes) if made_fakes else [])
    rows = measure_table(specs, Path(out) / "cache", detector, progress=progress)
    results = {}
    has_made = any(r.spec.role == AID for r in rows)
    for name, (streams, on) in VARIANTS.items():
        if on == "made" and not has_made:
            continue  # nothing to fit such a variant's learned streams on
        results[name] = run_lomo(rows, dataclasses.replace(config, streams=streams, streams_on=on), progress)
    chosen = max(results, key=lambda k: (results[k].mean_auc, -list(VARIANTS).index(k)))
    streams, on = VARIANTS[chosen]
    shipped = dataclasses.replace(config, streams=streams, streams_on=on)
    baselines = {"frame classifier alone (frames:logit, max over windows)":
                 single_stream_aucs(rows, "frames:logit")}
    families = {r.spec.path: r.spec.family for r in rows if r.spec.label == 1}
    in_domain = _in_domain(rows, Path(out) / "cache", detector, shipped, progress)
    shown_first = {chosen: results[chosen], **results}  # the tables and plots lead with the shipped variant
    files = [str(p) for p in write_lomo(out, shown_first, baselines, families, in_domain)]
    bundle_path = None
    if fit:
        bundle = fit_bundle(rows, shipped)
        bundle.fitted_on["detector_sha256"] = sha256_file(detector or BUNDLED_DETECTOR)
        bundle.fitted_on["lomo"] = {"variant": chosen, "mean_auc": results[chosen].mean_auc,
                                    "min_auc": results[chosen].min_auc,
                                    "fpr_nested": results[chosen].fpr_nested,
                                    "fpr_nested_widened": results[chosen].fpr_nested_widened,
                                    "rule": "highest mean LOMO AUC of the variants " + ", ".join(VARIANTS)}
        bundle.save(fit)
        bundle_path = str(fit)
    return ProtocolResult(results, chosen, baselines, in_domain, len(rows), files, bundle_path)


def _in_domain(rows: list[ClipRow], cache: Path, detector, config: LomoConfig, progress: bool
               ) -> dict[str, dict[str, float]]:
    """sfumato's own fakes against the real clips' first 4 s, both re-encoded at CRF 23 and 40, scored
    by stacks that saw sfumato's fakes of other people (every method in training, identity folds)."""
    fakes = [r.spec for r in rows if r.spec.method == SFUMATO]
    reals = [r.spec for r in rows if r.spec.label == 0]
    if not fakes:
        return {}
    out = {}
    for crf in (23, 40):
        specs = recompressed_specs(reals + fakes, cache / f"c{crf}", crf)
        test = measure_table(specs, cache, detector, progress=progress)
        got = cross_scores(rows, test, config)
        real = [got[r.spec.path] for r in test if r.spec.label == 0 and r.spec.path in got]
        fake = [got[r.spec.path] for r in test if r.spec.label == 1 and r.spec.path in got]
        frames = single_stream_aucs(test, "frames:logit").get(SFUMATO, float("nan"))
        out[f"c{crf}"] = {"auc": auc(real, fake), "real_clips": len(real), "fakes": len(fake),
                          "frame_classifier_alone_auc": frames}
    return out


__all__ = ["VARIANTS", "ClipRow", "ClipSpec", "LomoConfig", "LomoResult", "ProtocolResult", "fit_bundle",
           "made_fake_specs", "measure_table", "run_lomo", "run_protocol", "shared_specs",
           "single_stream_aucs", "cross_scores", "recompressed_specs"]

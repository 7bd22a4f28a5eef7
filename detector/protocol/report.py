"""The protocol's outputs: lomo.json, lomo.md (the tables) and two plots (ROC per family, FPR by bucket)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from detector.protocol.lomo import LomoResult, MethodResult
from generator.io.files import write_bytes_atomic


def _row(r: MethodResult) -> str:
    return f"| {r.name} | {r.family} | {r.fakes} | {r.auc:.3f} | {r.low:.2f}-{r.high:.2f} | {r.tpr:.2f} |"


def lomo_markdown(results: dict[str, LomoResult], baselines: dict[str, dict[str, float]] | None = None,
                  in_domain: dict[str, dict[str, float]] | None = None) -> str:
    """Tables for one or more stream sets (keys name them), per method, per family and per bucket."""
    out = ["# Leave-one-method-out, identity-grouped out of fold", ""]
    for name, res in results.items():
        out += [f"## Streams: {name}", "",
                f"Mean AUC over {len(res.methods)} methods **{res.mean_auc:.3f}** "
                f"(lowest {res.min_auc:.3f}); "
                f"{res.real_clips} real clips of {res.real_identities} identities; real clips called fake at "
                f"the shipped threshold, nested out of fold: **{res.fpr_nested:.1%}**.", "",
                "| method | family | fakes | AUC | 95% CI | TPR at threshold |", "|---|---|---|---|---|---|"]
        out += [_row(r) for r in res.methods]
        out += ["", "| family | fakes | AUC | 95% CI | TPR at threshold |", "|---|---|---|---|---|"]
        out += [f"| {r.name} | {r.fakes} | {r.auc:.3f} | {r.low:.2f}-{r.high:.2f} | {r.tpr:.2f} |"
                for r in res.families]
        out += ["", f"With the widened points scan uses in buckets that missed the rate: "
                f"**{res.fpr_nested_widened:.1%}**.", "",
                "| condition | bucket | real clips | FPR (nested) | FPR, widened buckets |",
                "|---|---|---|---|---|"]
        out += [f"| {b.condition} | {b.bucket} | {b.real_clips} | {b.fpr:.1%} | {b.fpr_widened:.1%} |"
                for b in res.fpr_buckets]
        out.append("")
    if in_domain:
        out += ["## In domain: sfumato's own fakes against real clips (4 s each, identity folds)", "",
                "| level | real clips | fakes | AUC (stack) | AUC (frame classifier alone) |",
                "|---|---|---|---|---|"]
        out += [f"| {lvl} | {d['real_clips']} | {d['fakes']} | {d['auc']:.3f} | "
                f"{d['frame_classifier_alone_auc']:.3f} |" for lvl, d in in_domain.items()]
        out.append("")
    for name, aucs in (baselines or {}).items():
        vals = [v for v in aucs.values() if np.isfinite(v)]
        out += [f"## Unlearned baseline: {name}", "",
                f"Mean AUC {np.mean(vals):.3f} (lowest {np.min(vals):.3f}); no training, so no folds.", "",
                "| method | AUC |", "|---|---|"]
        out += [f"| {m} | {v:.3f} |" for m, v in aucs.items()]
        out.append("")
    return "\n".join(out)


def write_lomo(out_dir: str | os.PathLike, results: dict[str, LomoResult],
               baselines: dict[str, dict[str, float]] | None = None, families: dict[str, str] | None = None,
               in_domain: dict[str, dict[str, float]] | None = None) -> list[Path]:
    """Write lomo.json, lomo.md, roc_by_family.png and fpr_by_bucket.png (the first result's)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {name: r.to_dict() for name, r in results.items()}
    doc["baselines"] = baselines or {}
    doc["in_domain"] = in_domain or {}
    write_bytes_atomic(out / "lomo.json", json.dumps(doc, indent=1).encode())
    write_bytes_atomic(out / "lomo.md", lomo_markdown(results, baselines, in_domain).encode())
    main = next(iter(results.values()))
    paths = [out / "lomo.json", out / "lomo.md"]
    paths += _plots(out, main, families or {})
    return paths


def _roc(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = np.unique(np.concatenate([real, fake, [np.inf]]))[::-1]
    return (np.array([np.mean(real >= t) for t in points]), np.array([np.mean(fake >= t) for t in points]))


def _plots(out: Path, res: LomoResult, families: dict[str, str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real = np.asarray(list(res.real_scores.values()))
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for fam in sorted(set(families.values())):
        fake = np.asarray([s for p, s in res.fake_scores.items() if families.get(p) == fam])
        if len(fake):
            fpr, tpr = _roc(real, fake)
            ax.plot(fpr, tpr, label=f"{fam} ({len(fake)})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.axvline(0.05, color="red", lw=0.8, ls="--", label="stated FPR 5%")
    ax.set(xlabel="real clips called fake (out of fold)", ylabel="fakes caught (method held out)",
           title="ROC per family, leave-one-method-out")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc_by_family.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    labels = [f"{b.condition}: {b.bucket}\n({b.real_clips})" for b in res.fpr_buckets]
    ax.bar(range(len(labels)), [b.fpr for b in res.fpr_buckets], color="steelblue")
    ax.axhline(0.10, color="red", ls="--", lw=0.8, label="goal 10%")
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set(ylabel="real clips called fake", title="False-positive rate by condition (nested out of fold)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fpr_by_bucket.png", dpi=110)
    plt.close(fig)
    return [out / "roc_by_family.png", out / "fpr_by_bucket.png"]

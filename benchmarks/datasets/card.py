"""The dataset card (README.md) of a built benchmark: what is in it, how it was made, how r looks.

A benchmark is only as good as its documentation (detection.md): counts per split / label / method /
compression, the identities of each split, what was skipped and why, the realism score of real vs
fake frames (histograms, and how well r alone separates them), the command, hashes and versions.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from detector.data.schema import ClipRecord
from generator.io.files import write_bytes_atomic

HISTOGRAM = "realism_hist.png"
FILTER_HISTOGRAM = "filter_hist.png"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def realism_auc(rows: list[ClipRecord]) -> dict[str, float | None]:
    """Per compression: ROC AUC of -mean r as a fake score per clip (r high = looks real)."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for comp in sorted({r.compression for r in rows}):
        pairs = [(r.label == "fake", -r.realism_mean) for r in rows
                 if r.compression == comp and r.realism_mean is not None]
        labels = {p[0] for p in pairs}
        out[comp] = round(float(roc_auc_score(*zip(*pairs))), 4) if len(labels) == 2 else None
    return out


def write_histogram(path: Path, rows: list[ClipRecord]) -> None:
    """Per-frame r of real vs fake frames, one panel per compression, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = sorted({r.compression for r in rows}) or ["c0"]
    fig, axes = plt.subplots(1, len(comps), figsize=(4.2 * len(comps), 3.2), squeeze=False)
    for ax, comp in zip(axes[0], comps):
        values = {lab: np.array([v for r in rows if r.compression == comp and r.label == lab
                                 for v in (r.realism or []) if v is not None]) for lab in ("real", "fake")}
        both = np.concatenate([v for v in values.values() if len(v)] or [np.zeros(1)])
        bins = np.linspace(both.min(), both.max() + 1e-6, 40)
        for lab, colour in (("real", "tab:blue"), ("fake", "tab:red")):
            if len(values[lab]):
                ax.hist(values[lab], bins=bins, alpha=0.55, color=colour, density=True,
                        label=f"{lab} ({len(values[lab])} frames)")
        ax.set_title(f"{comp}: realism score r per frame")
        ax.set_xlabel("r (higher = looks real to D)")
        ax.legend(fontsize=8)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as a PNG atomically and close it."""
    import io

    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def selection_summary(selections: dict[str, dict], threshold: dict | None) -> dict:
    """What the hard-example filter did: candidates tried, how many passed, slots kept and dropped,
    and the share of candidate rendering spent on candidates that were not kept."""
    tried = [c for s in selections.values() for c in s["candidates"] if "error" not in c]
    kept = [s["candidates"][[c["candidate"] for c in s["candidates"]].index(s["chosen"])]
            for s in selections.values() if s.get("chosen") is not None]
    seconds = sum(c["seconds"] for c in tried)
    kept_seconds = sum(c["seconds"] for c in kept)
    return {"planned_fakes": len(selections), "kept_fakes": len(kept),
            "kept_share": round(len(kept) / max(len(selections), 1), 4),
            "candidates_tried": len(tried),
            "candidates_failed": sum("error" in c for s in selections.values() for c in s["candidates"]),
            "candidates_passed": sum(c["passed"] for c in tried),
            "acceptance_rate": round(sum(c["passed"] for c in tried) / max(len(tried), 1), 4),
            "threshold": None if threshold is None else threshold.get("value"),
            "threshold_source": None if threshold is None else threshold.get("source"),
            "judge_sha256": next((s["judge_sha256"] for s in selections.values() if s.get("judge_sha256")),
                                 None),
            "candidate_seconds": round(seconds, 2),
            "extra_generation_share": round(1 - kept_seconds / seconds, 4) if seconds else 0.0,
            "realism_tried": [c["realism_mean"] for c in tried],
            "realism_kept": [c["realism_mean"] for c in kept],
            "probability_tried": [c["fake_probability"] for c in tried],
            "probability_kept": [c["fake_probability"] for c in kept]}


def write_filter_histogram(path: Path, summary: dict) -> None:
    """Candidates' mean r (and the judge's fake probability) before (all tried) and after (kept)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("realism", "mean r per candidate clip (higher = looks real to D)")]
    if any(v is not None for v in summary["probability_tried"]):
        panels.append(("probability", "judge's p(fake) per candidate clip"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.3), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        tried = np.array([v for v in summary[f"{key}_tried"] if v is not None], float)
        kept = np.array([v for v in summary[f"{key}_kept"] if v is not None], float)
        if len(tried):
            bins = np.linspace(tried.min(), tried.max() + 1e-6, 30)
            ax.hist(tried, bins=bins, alpha=0.5, color="tab:gray", label=f"tried ({len(tried)})")
            ax.hist(kept, bins=bins, alpha=0.7, color="tab:red", label=f"kept ({len(kept)})")
        if key == "realism" and summary["threshold"] is not None:
            ax.axvline(summary["threshold"], color="k", ls="--", lw=1,
                       label=f"threshold {summary['threshold']:.3f}")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def _filter_lines(summary: dict) -> list[str]:
    judge = summary["judge_sha256"]
    lines = ["## Hard examples", "",
             f"Fakes were chosen: {summary['candidates_tried']} candidates rendered for "
             f"{summary['planned_fakes']} planned fakes (each candidate draws its own T shots and, in "
             "cross-reenactment, another stretch of the driver's video). A candidate passes when its mean r "
             "(on the rendered frames) reaches the threshold; of those passing, the one kept is "
             + ("the one the detector below scores most real." if judge
                else "the one with the highest mean r."),
             "",
             f"- Threshold: {summary['threshold'] if summary['threshold'] is not None else 'none'}"
             + (f" ({summary['threshold_source']})" if summary["threshold_source"] else ""),
             f"- Judge: {'detector sha256 `' + judge + '`' if judge else 'none'}",
             f"- Candidates passing: {summary['candidates_passed']} of {summary['candidates_tried']} "
             f"(acceptance rate {summary['acceptance_rate']:.1%}); failed to render: "
             f"{summary['candidates_failed']}",
             f"- Fakes kept: {summary['kept_fakes']} of {summary['planned_fakes']} planned "
             f"({summary['kept_share']:.1%}); the rest are listed under Skipped as filtered",
             f"- Extra generation: {summary['extra_generation_share']:.1%} of the "
             f"{summary['candidate_seconds']:.0f} s "
             "spent rendering candidates went to candidates that were not kept", "",
             f"![candidates before and after the filter]({FILTER_HISTOGRAM})", ""]
    return lines


def card_text(doc: dict, rows: list[ClipRecord], skips: list[dict], filter_summary: dict | None = None,
              dropped: list[dict] = ()) -> str:
    """The markdown of the card."""
    lines = _made_lines(doc) + _count_lines(doc, rows) + _realism_lines(rows)
    if filter_summary is not None:
        lines += _filter_lines(filter_summary)
    lines += _closing_lines(doc, skips, dropped)
    return "\n".join(lines)


def _made_lines(doc: dict) -> list[str]:
    """What the dataset is and how it was made: command, inputs, digest, settings."""
    cfg = doc["config"]
    lines = ["# sfumato benchmark dataset", "",
             "Real talking-head clips and few-shot talking-head fakes of the same people (Zakharov et al., "
             "ICCV 2019), made by `sfumato dataset build`. Identity-disjoint splits; every clip at "
             f"{', '.join(cfg['compressions'])} (H.264 CRF "
             f"{', '.join(str(c[1:]) for c in cfg['compressions'])}"
             "); every fake C2PA-signed (`*.signed.mp4`) with a manifest-free copy (`path`, what a "
             "detector should read: fakes in the wild carry no manifest).", "",
             "## How it was made", "",
             f"- Command: `{doc.get('command') or '(library call)'}`",
             f"- Generator checkpoint sha256: `{doc['checkpoint_sha256']}`"
             + (f" ({doc['checkpoint']})" if doc.get("checkpoint") else ""),
             f"- Corpus: {doc.get('corpus', '?')} ({len(doc['corpus_videos'])} videos)",
             f"- Build digest (settings + corpus + checkpoint + plan): `{doc['digest']}`",
             f"- Seed {cfg['seed']}; versions: "
             + ", ".join(f"{k} {v}" for k, v in (doc.get("versions") or {}).items()), "",
             "Settings:", "", "```json", json.dumps(cfg, indent=1), "```", "",
             "A fake keeps the target clip's frames, background and head pose and replaces the face (convex "
             "hull of the landmarks, feathered) by the generator's rendering of the target identity from T "
             "of its frames (FF: feed-forward; FT: fine-tuned) driven by the expressions of the target "
             "itself (self) or of another identity of the same split (cross). Shots come from frames "
             "outside the clip where the corpus has enough.", "",
             "## Counts", ""]
    return lines


def _count_lines(doc: dict, rows: list[ClipRecord]) -> list[str]:
    """Clips and files per split, method and compression; the identities of each split."""
    per_clip = list({r.clip_id: r for r in rows}.values())
    splits = ("train", "val", "test")
    lines = _table(["split", "identities", "real clips", "fake clips", "files"],
                    [[s, sum(v == s for v in doc["splits"].values()),
                      sum(c.split == s and c.label == "real" for c in per_clip),
                      sum(c.split == s and c.label == "fake" for c in per_clip),
                      sum(r.split == s for r in rows)] for s in splits])
    lines += [""]
    methods = Counter((c.method, c.shots, c.mode) for c in per_clip)
    lines += _table(["method", "T", "mode", "clips"],
                    [[m, t if t is not None else "-", mo or "-", n]
                     for (m, t, mo), n in sorted(methods.items(), key=lambda x: (x[0][0], x[0][1] or 0,
                                                                                   x[0][2] or ""))])
    lines += ["", "Files per compression: " + ", ".join(
        f"{c} {n}" for c, n in sorted(Counter(r.compression for r in rows).items())), ""]
    lines += ["## Identities per split", ""]
    for s in splits:
        ids = sorted(i for i, v in doc["splits"].items() if v == s)
        lines.append(f"- **{s}** ({len(ids)}): {', '.join(ids) or '-'}")
    lines += ["", "No identity is in two splits (checked when the split is made).", ""]
    return lines


def _realism_lines(rows: list[ClipRecord]) -> list[str]:
    """r's histogram, mean per label and compression, and its AUC alone."""
    lines = ["## Realism score r", "",
             f"![realism histograms]({HISTOGRAM})", "",
             "r = V(x, y)^T w_0 + b, the generator's projection discriminator with no identity (eq. 3), "
             "on each frame's face crop and the landmarks it should show. Mean r per clip:", ""]
    auc = realism_auc(rows)
    rows_t = []
    for comp in sorted({r.compression for r in rows}):
        means = {lab: [r.realism_mean for r in rows if r.compression == comp and r.label == lab
                       and r.realism_mean is not None] for lab in ("real", "fake")}
        rows_t.append([comp, *(f"{np.mean(v):.3f}" if v else "-" for v in means.values()),
                       auc.get(comp) if auc.get(comp) is not None else "-"])
    lines += _table(["compression", "real", "fake", "AUC of r alone (fake = low r)"], rows_t)
    lines += [""]
    return lines


def _closing_lines(doc: dict, skips: list[dict], dropped: list[dict]) -> list[str]:
    """What was skipped or filtered, the files, and the terms of use."""
    lines = ["## Skipped", ""]
    skipped = [*(f"identity {s['identity']}: {s['reason']}" for s in doc["skipped_identities"]),
               *(f"clip {s['clip_id']}: {s['reason']}" for s in skips),
               *(f"clip {s['clip_id']} (filtered): {s['reason']}" for s in dropped)]
    lines += [f"- {s}" for s in skipped] or ["Nothing was skipped."]
    lines += ["", "## Files", "",
              "- `metadata.jsonl`: one row per clip file (clip x compression) with every field, including "
              "`realism`, r per frame (null: no face found); `metadata.csv`: the same without per-frame r.",
              "- `videos/<clip_id>/<compression>.mp4` (+ `.signed.mp4` for fakes, `track.npz`: per-frame "
              "crop matrices and landmarks), `splits.json`, `build.json` (the whole plan), `records/`.",
              "- `sfumato dataset export DIR --format deepfakebench|ffpp|csv` writes layouts other tools "
              "read; `sfumato dataset perturb DIR --type GB --level 3` makes DeeperForensics-style perturbed "
              "copies.",
              "", "## Use", "",
              "For research on detecting synthetic faces. The real clips show real people from the corpus "
              "(see its sources and their terms: research use, no redistribution outside the project); "
              "the fakes show them doing what they did not do. Do not publish the fakes as real footage, "
              "and keep the signed copies' manifests intact when sharing generated media.", ""]
    return lines


def write_card(out: Path, doc: dict, rows: list[ClipRecord], skips: list[dict],
               selections: dict[str, dict] | None = None, threshold: dict | None = None) -> dict:
    """Write README.md and the realism histogram into ``out`` (and, when fakes were chosen among
    candidates, the filter's histogram and filter_summary.json); returns paths, r's AUCs and the
    filter's summary."""
    write_histogram(out / HISTOGRAM, rows)
    summary = None
    if selections:
        summary = selection_summary(selections, threshold)
        write_filter_histogram(out / FILTER_HISTOGRAM, summary)
        write_bytes_atomic(out / "filter_summary.json", json.dumps(summary, indent=1).encode())
    dropped = [{"clip_id": i, "reason": "no candidate passed"} for i, s in (selections or {}).items()
               if s.get("chosen") is None]
    write_bytes_atomic(out / "README.md", card_text(doc, rows, skips, summary, dropped).encode())
    out_d = {"card": str(out / "README.md"), "histogram": str(out / HISTOGRAM),
             "realism_auc": realism_auc(rows)}
    if summary is not None:
        out_d["filter"] = {k: v for k, v in summary.items() if not isinstance(v, list)}
    return out_d

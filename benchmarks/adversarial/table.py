"""The round table of ``sfumato dataset round`` (every detector on every round's test split) and the
round folder's card: the table as JSON-ready cells, markdown and a heat map, and the README."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from generator.io.files import write_bytes_atomic

TABLE_COMPRESSIONS = ("c23", "c40")  # the levels each cell reports


def video_auc(result: dict, compression: str) -> float | None:
    """Video AUC of the detector's verdict (fused when it has a fusion) at one compression level."""
    group = result["metrics"].get(f"compression={compression}") or {}
    method = group.get("fused") or group.get("backbone")
    auc = method["video"]["auc"] if method else None
    return None if auc is None or not np.isfinite(auc) else round(float(auc), 4)


def round_table(evals: dict[tuple[str, int], dict], detectors: list[str], rounds: int) -> dict:
    """{"rows": detectors, "columns": T_0..T_n, "cells": [[{c23, c40}]]} from evaluation results."""
    cells = [[{c: video_auc(evals[(d, k)], c) if (d, k) in evals else None for c in TABLE_COMPRESSIONS}
              for k in range(rounds + 1)] for d in detectors]
    return {"rows": detectors, "columns": [f"T{k}" for k in range(rounds + 1)], "cells": cells,
            "metric": "video AUC (fused verdict; backbone alone for a detector without fusion)"}


def table_markdown(table: dict) -> str:
    """The round table in markdown (each cell: AUC at c23 / c40)."""
    head = ["detector \\ test set", *table["columns"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in zip(table["rows"], table["cells"]):
        cells = [" / ".join("-" if c[k] is None else f"{c[k]:.3f}" for k in TABLE_COMPRESSIONS) for c in row]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nCells: {table['metric']} at {' / '.join(TABLE_COMPRESSIONS)}.\n"


def write_table_plot(path: Path, table: dict) -> None:
    """One heat map per compression level: rows detectors, columns test sets, AUC in each cell."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TABLE_COMPRESSIONS), squeeze=False,
                             figsize=(2.0 + 1.3 * len(table["columns"]) * len(TABLE_COMPRESSIONS),
                                      1.2 + 0.55 * len(table["rows"])))
    for ax, comp in zip(axes[0], TABLE_COMPRESSIONS):
        m = np.array([[np.nan if c[comp] is None else c[comp] for c in row] for row in table["cells"]])
        ax.imshow(m, vmin=0.5, vmax=1.0, cmap="RdYlGn")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, "-" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=9)
        ax.set_xticks(range(len(table["columns"])), table["columns"])
        ax.set_yticks(range(len(table["rows"])), table["rows"])
        ax.set_title(f"video AUC at {comp}", fontsize=10)
        ax.set_xlabel("test set of round")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def rounds_readme(state: dict, table: dict) -> str:
    """The round folder's card: what each round is (hashes, settings, commands), the table, wall times."""
    steps = state["steps"]
    n_rounds = len(table["columns"]) - 1
    lines = ["# sfumato adversarial rounds", "",
             "Round 0: the given generator G0, detector D0 and a dataset T0 built with G0. Round n: Gn = "
             "G(n-1) fine-tuned against the frozen D(n-1) (the paper's L_CNT + L_ADV plus lambda_DET "
             "-log(1 - p_fake)); Tn built with Gn on the same identity split; Dn = D(n-1) fine-tuned on the "
             "union of T0..Tn. Cite a round by its folder and the hashes below.", "",
             "## Round table", "", table_markdown(table), "![round table](table.png)", "",
             "## Rounds", ""]
    lines += ["| round | generator sha256 | dataset digest | detector sha256 | p_fake before -> after "
              "(probe) | CSIM before -> after | SSIM before -> after | seconds |", "|" + "---|" * 8]
    for n in range(n_rounds + 1):
        gen = steps.get(f"round{n}/generator", {})
        q = steps.get(f"round{n}/quality", {})
        p = (f"{gen['before']['p_fake']:.3f} -> {gen['after']['p_fake']:.3f}" if gen.get("before") else "-")

        def pair(metric: str, q=q) -> str:
            b, a = q.get("before"), q.get("after")
            return f"{b[metric]:.3f} -> {a[metric]:.3f}" if b and a else "-"

        secs = sum(v.get("seconds", 0) for k, v in steps.items() if k.startswith(f"round{n}/"))
        h = table["hashes"]
        lines.append(f"| {n} | `{h['generators'][n][:16]}` | `{h['datasets'][n][:16]}` | "
                     f"`{h['detectors'][f'D{n}'][:16]}` | {p} | {pair('CSIM')} | {pair('SSIM')} | "
                     f"{secs:.0f} |")
    lines += ["", "Seconds: wall time of the round's steps when they ran (generator, quality, dataset, "
              "detector, own evaluation); the table's cross evaluations are extra.", "",
              "## Commands", "", *(f"- `{c}`" for c in state["commands"]), "",
              "## Settings", "", "```json", json.dumps(state["stamp"]["config"], indent=1), "```", "",
              f"Versions: {', '.join(f'{k} {v}' for k, v in state.get('versions', {}).items())}", ""]
    return "\n".join(lines)

"""How fast ``dataset build`` makes clips: clips per minute per compression level, and the share of
time in generation (tracking, persons, G, paste), encoding, signing and realism scoring; and what
hard examples cost (``run_filter_cost``: the same build with K candidates per fake and a realism
bar, beside the plain one: acceptance rate, kept share, extra generation and wall time).

Runs a real build of a few identities of a corpus into a temporary folder and reads its stage timings.
Per compression level, "clips/min" is the rate a build of that level alone would reach: the shared
generation time plus that level's encoding, signing and scoring.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from benchmarks.datasets.build import BuildResult, build_dataset
from benchmarks.datasets.plan import BuildConfig

GENERATION = ("track", "person", "render", "paste")


def summarise(summary: BuildResult, compressions: tuple[str, ...]) -> dict:
    """Rates and shares from a build's ``stage_seconds`` (the clips it made)."""
    st = summary.stage_seconds
    clips = max(summary.made, 1)
    gen = sum(st.get(k, 0.0) for k in GENERATION)
    per_comp = {c: {"encode": st.get(f"encode_{c}", 0.0), "sign": st.get(f"sign_{c}", 0.0)}
                for c in compressions}
    realism = st.get("realism", 0.0)
    rates = {}
    for c, t in per_comp.items():
        alone = gen + t["encode"] + t["sign"] + realism / len(compressions)
        rates[c] = round(60.0 * clips / max(alone, 1e-9), 2)
    encode = sum(t["encode"] for t in per_comp.values())
    sign = sum(t["sign"] for t in per_comp.values())
    total = gen + encode + sign + realism
    share = {"generation": gen, "encoding": encode, "signing": sign, "realism": realism}
    return {"clips": summary.made, "seconds": summary.seconds,
            "clips_per_minute_all_levels": round(60.0 * clips / max(summary.seconds, 1e-9), 2),
            "clips_per_minute_per_level": rates,
            "share_percent": {k: round(100 * v / max(total, 1e-9), 1) for k, v in share.items()},
            "generation_seconds": {k: st.get(k, 0.0) for k in GENERATION},
            "per_level_seconds": per_comp}


def _subset(corpus: str | os.PathLike, identities: int, tmp: Path) -> tuple[Path, list[str]]:
    """A corpus of the first ``identities`` identities, made of links (no frames copied)."""
    from generator.corpus.reader import Corpus

    keep = Corpus.open(corpus).identities[:identities]
    sub = tmp / "corpus"
    for ident in keep:
        (sub / ident).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(Path(corpus).resolve() / ident, sub / ident)
    return sub, keep


def run_build_speed(corpus: str | os.PathLike, checkpoint: str | os.PathLike, identities: int = 6,
                    config: BuildConfig | None = None, progress: bool = False) -> dict:
    """Build a small dataset from the first ``identities`` identities of ``corpus``; return the figures."""
    from generator.provenance.manifest import SigningOptions

    config = config or BuildConfig(splits=(0.34, 0.33, 0.33), fakes_per_real=4)
    with tempfile.TemporaryDirectory() as tmp:
        sub, keep = _subset(corpus, identities, Path(tmp))
        summary = build_dataset(sub, checkpoint, Path(tmp) / "ds", config,
                                signing=SigningOptions(keys_dir=str(Path(tmp) / "keys")), progress=progress)
    return {"identities": keep, "config": dataclasses.asdict(config),
            **summarise(summary, config.compressions)}


def run_filter_cost(corpus: str | os.PathLike, checkpoint: str | os.PathLike, identities: int = 6,
                    config: BuildConfig | None = None, candidates: int = 3,
                    realism_quantile: float | None = 0.5, min_realism: float | None = None,
                    progress: bool = False) -> dict:
    """The same small build twice, plain and with hard examples; what the filter kept and cost."""
    from generator.provenance.manifest import SigningOptions

    config = config or BuildConfig(splits=(0.34, 0.33, 0.33), fakes_per_real=4)
    hard = dataclasses.replace(config, candidates=candidates, realism_quantile=realism_quantile,
                               min_realism=min_realism)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        sub, keep = _subset(corpus, identities, Path(tmp))
        signing = SigningOptions(keys_dir=str(Path(tmp) / "keys"))
        for name, cfg in (("plain", config), ("hard", hard)):
            s = build_dataset(sub, checkpoint, Path(tmp) / name, cfg, signing=signing, progress=progress)
            out[name] = {"seconds": s.seconds, "made": s.made, "filtered": s.filtered_now,
                         "stage_seconds": s.stage_seconds, "realism_auc": s.dataset.realism_auc,
                         "filter": s.dataset.filter}
    f = out["hard"]["filter"] or {}
    return {"identities": keep, "config": dataclasses.asdict(hard), **out,
            "acceptance_rate": f.get("acceptance_rate"), "kept_share": f.get("kept_share"),
            "threshold": f.get("threshold"), "extra_generation_share": f.get("extra_generation_share"),
            "wall_time_ratio": round(out["hard"]["seconds"] / max(out["plain"]["seconds"], 1e-9), 3)}

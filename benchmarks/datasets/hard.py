"""Hard examples (issue 9): a planned fake rendered as several candidates, judged by r against a
threshold and optionally by a trained detector (``--hard-for``), the best one kept.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.datasets.plan import ClipPlan, Segment, derived_seed
from benchmarks.datasets.render import ClipMaker, SkipClip
from generator.errors import BadInputError
from generator.io.files import sha256_file, write_bytes_atomic

if TYPE_CHECKING:  # the corpus package imports torch: keep `dataset --help` light
    from generator.corpus.reader import VideoEntry

FILTER_FILE = "filter.json"  # the build's realism threshold, shared by resumed runs and shards


def candidate_plan(clip: ClipPlan, k: int, videos: dict[str, VideoEntry], clip_frames: int
                   ) -> tuple[ClipPlan, int | None]:
    """(plan, shot seed) of candidate ``k`` of a planned fake: 0 is the plan itself; the others draw
    their own T shots (and, in cross-reenactment, another stretch of the driver's video) from a seed of
    their own, so the clip keeps its id, identities, T and mode."""
    if k == 0:
        return clip, None
    seed = derived_seed(clip.seed, f"candidate:{k}")
    driver = clip.driver
    if clip.method == "cross":
        room = videos[driver.video].frame_count - clip_frames
        if room > 0:
            driver = Segment(driver.video, int(np.random.default_rng(seed).integers(0, room + 1)))
    return dataclasses.replace(clip, driver=driver, seed=seed), seed


class DetectorJudge:
    """``--hard-for``: a trained detector's mean fake probability over a clip's faces, in memory."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", frames: int = 16):
        from detector.model import load_detector

        self.model, self.meta = load_detector(path, device)
        self.size, self.frames = int(self.meta["input_size"]), frames
        self.path, self.sha256 = str(path), sha256_file(path)

    def __call__(self, frames: np.ndarray, points: np.ndarray, found: np.ndarray) -> float:
        """Mean p(fake) over up to ``frames`` evenly spaced frames with a face (points: frame pixels)."""
        from detector.model import predict
        from generator.faces.crop import DETECTOR_CROP, crop_face

        idx = np.flatnonzero(found)
        if not len(idx):
            return float("nan")
        idx = idx[np.linspace(0, len(idx) - 1, min(self.frames, len(idx))).round().astype(int)]
        params = dataclasses.replace(DETECTOR_CROP, size=self.size)
        crops = np.stack([crop_face(frames[i], points[i], params)[0] for i in idx])
        return float(predict(self.model, crops).mean())


def choose_candidate(maker: ClipMaker, clip: ClipPlan, threshold: float | None,
                     judge: DetectorJudge | None) -> tuple[tuple | None, dict]:
    """Render the candidates of one planned fake and keep the best that passes.

    Passing: mean r (on the rendered frames, before encoding) at least ``threshold``. Best: the
    lowest fake probability of ``judge`` when there is one, else the highest mean r. Returns
    ((chosen plan, (frames, matrices, landmarks, found)) or None when none passed, the record of
    every candidate tried)."""
    tried, best, best_key = [], None, -np.inf
    for k in range(maker.config.candidates):
        plan, shot_seed = candidate_plan(clip, k, maker.videos, maker.config.clip_frames)
        t0 = time.perf_counter()
        try:
            frames, matrices, local, found, full = maker.render_full(plan, shot_seed)
        except SkipClip as exc:
            tried.append({"candidate": k, "error": str(exc)})
            continue
        r = maker.scorer.frames(frames, matrices, local, found)
        r_mean = float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")
        p = judge(frames, full, found) if judge is not None else None
        passed = threshold is None or (np.isfinite(r_mean) and r_mean >= threshold)
        seconds = time.perf_counter() - t0
        maker.seconds["candidates"] += seconds
        tried.append({"candidate": k, "seed": plan.seed, "shot_seed": shot_seed,
                      "driver_start_frame": plan.driver.start,
                      # unrounded: candidates of one clip can differ in the 6th decimal
                      "realism_mean": r_mean if np.isfinite(r_mean) else None,
                      "fake_probability": None if p is None or not np.isfinite(p) else p,
                      "passed": bool(passed), "seconds": round(seconds, 3)})
        if passed:
            key = -p if p is not None and np.isfinite(p) else (r_mean if judge is None else -np.inf)
            if best is None or key > best_key:
                best, best_key = (plan, (frames, matrices, local, found), k), key
    selection = {"threshold": threshold, "judge_sha256": judge.sha256 if judge else None,
                 "chosen": best[2] if best else None, "candidates": tried}
    return (best[:2] if best else None), selection


def realism_threshold(maker: ClipMaker, clips: list[ClipPlan]) -> dict | None:
    """The r a fake must reach: --min-realism as given, or --realism-quantile of the real clips' mean
    r (on their frames as the builder reads them, before encoding, like the candidates)."""
    cfg = maker.config
    if cfg.min_realism is not None:
        return {"value": cfg.min_realism, "source": "--min-realism"}
    if cfg.realism_quantile is None:
        return None
    means = {}
    for c in clips:
        if c.label != "real":
            continue
        try:
            frames, matrices, local, found = maker.render(c)
        except SkipClip:
            continue
        r = maker.scorer.frames(frames, matrices, local, found)
        if np.isfinite(r).any():
            means[c.clip_id] = round(float(np.nanmean(r)), 5)
    if not means:
        raise BadInputError("--realism-quantile needs real clips with faces to take the quantile of")
    value = round(float(np.quantile(list(means.values()), cfg.realism_quantile)), 5)
    return {"value": value, "source": f"quantile {cfg.realism_quantile:g} of the mean r of {len(means)} "
                                      "real clips", "real_means": means}


def stored_threshold(out: Path, doc: dict, maker: ClipMaker, clips: list[ClipPlan]) -> float | None:
    """The build's realism threshold, worked out once and kept in filter.json, so resumed runs and
    every shard judge against the same number."""
    path = out / FILTER_FILE
    try:
        got = json.loads(path.read_text())
        if got.get("digest") == doc["digest"]:
            return (got.get("threshold") or {}).get("value")
    except (OSError, ValueError):
        pass
    t0 = time.perf_counter()
    threshold = realism_threshold(maker, clips)
    maker.seconds["threshold"] += time.perf_counter() - t0
    if threshold is not None or not path.exists():
        doc_out = {"digest": doc["digest"], "threshold": threshold}
        write_bytes_atomic(path, json.dumps(doc_out, indent=1).encode())
    return threshold["value"] if threshold else None

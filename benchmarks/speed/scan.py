"""Seconds to scan a 10 s 720p clip (target: 1.5 s on a 2-core CPU), split into the stages the scan
times itself: provenance, decoding + face finding, the backbone (and r), the windows' evidence streams,
and the fusion and verdict.

The clip is made from a real talking-head video (default: the built-in astronaut clip) scaled into a
1280x720 frame and looped to 10 s, so the face pipeline works at the resolution users scan.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np


def letterboxed_720p(source: str | os.PathLike) -> list[np.ndarray]:
    """Every frame of ``source`` scaled to 720 px high inside a 1280x720 grey frame."""
    import cv2

    from generator.io.video import MediaReader

    with MediaReader(source) as r:
        frames = [f for _, f in r.frames()]
    h, w = frames[0].shape[:2]
    nw = min(1280, int(round(w * 720 / h)))
    x = (1280 - nw) // 2
    out = []
    for f in frames:
        c = np.full((720, 1280, 3), 30, np.uint8)
        c[:, x:x + nw] = cv2.resize(f, (nw, 720), interpolation=cv2.INTER_LINEAR)
        out.append(c)
    return out


def make_720p_clip(source: str | os.PathLike, out: str | os.PathLike, seconds: float = 10.0,
                   fps: float = 25.0) -> Path:
    """``seconds`` of ``source`` letterboxed into 1280x720 (looped if shorter)."""
    from generator.io.video import write_video

    frames = letterboxed_720p(source)
    write_video(out, [frames[i % len(frames)] for i in range(int(seconds * fps))], fps=fps, crf=20)
    return Path(out)


def run_scan_speed(detector: str | os.PathLike | None = None, generator: str | os.PathLike | None = None,
                   source: str | os.PathLike | None = None, repeats: int = 3, frames: int | None = None
                   ) -> dict:
    """Best-of-``repeats`` scan time of a 10 s 720p clip, with per-stage seconds."""
    from detector.scan import ScanConfig, Scanner
    from generator.io.samples import write_astronaut_clip

    scanner = Scanner(detector, generator, ScanConfig(frames=frames))
    with tempfile.TemporaryDirectory() as tmp:
        src = source or write_astronaut_clip(Path(tmp) / "astronaut.mp4", n_frames=50)
        clip = make_720p_clip(src, Path(tmp) / "clip720.mp4")
        best = None
        for _ in range(repeats):
            t = time.perf_counter()
            result = scanner.scan(clip)  # the scan times its own stages (ScanResult.stage_seconds)
            wall = time.perf_counter() - t
            if best is None or wall < best[0]:
                best = (wall, result)
    wall, result = best
    stages = dict(result.stage_seconds)
    stages["other"] = round(max(wall - sum(stages.values()), 0.0), 3)
    return {"clip": "10 s, 1280x720, 25 fps", "frames_sampled": scanner.frames, "seconds": round(wall, 3),
            "stage_seconds": stages, "windows": len(result.windows),
            "verdict": result.verdict.to_dict(), "models": result.models.to_dict(), "target_seconds": 1.5}


def make_long_clip(source: str | os.PathLike, out: str | os.PathLike, minutes: float,
                   fps: float = 25.0) -> Path:
    """``minutes`` of ``source`` letterboxed into 1280x720, looped back and forth, encoded fast and
    streamed (making it holds one loop of frames, not the file)."""
    from generator.io.encode import VideoWriter

    frames = letterboxed_720p(source)
    loop = frames + frames[::-1]  # back and forth: no jump at the loop point
    with VideoWriter(out, fps, crf=28, preset="ultrafast") as writer:
        for i in range(int(minutes * 60 * fps)):
            writer.write(loop[i % len(loop)])
    return Path(out)


def run_long_scan(minutes: float = 10.0, detector: str | os.PathLike | None = None,
                  source: str | os.PathLike | None = None) -> dict:
    """Scan a ``minutes``-long 720p file after a warm-up scan: seconds, windows, and how much the
    process's peak memory grew over the long scan (flat memory: close to nothing)."""
    import resource

    from detector.scan import ScanConfig, Scanner
    from generator.io.samples import write_astronaut_clip

    scanner = Scanner(detector, config=ScanConfig())
    with tempfile.TemporaryDirectory() as tmp:
        src = source or write_astronaut_clip(Path(tmp) / "astronaut.mp4", n_frames=50)
        short = make_720p_clip(src, Path(tmp) / "clip720.mp4")
        long = make_long_clip(src, Path(tmp) / "long720.mp4", minutes)
        scanner.scan(short)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        result = scanner.scan(long)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"clip": f"{minutes:g} min, 1280x720, 25 fps", "seconds": round(wall, 1),
            "windows": len(result.windows), "complete": bool(result.coverage and result.coverage.complete),
            "peak_rss_mib_after_warm_up": round(before), "peak_rss_mib_after_long_scan": round(after),
            "peak_growth_mib": round(after - before), "stage_seconds": result.stage_seconds,
            "verdict": result.verdict.label}


def run_folder_scan(files: int = 200, detector: str | os.PathLike | None = None,
                    source: str | os.PathLike | None = None) -> dict:
    """Scan a folder of ``files`` short clips in one warm process: seconds per file, and the peak memory
    after the first tenth against after all of them (flat: the growth stays small)."""
    import resource
    import shutil

    from detector.scan import ScanConfig, Scanner, scan_paths
    from generator.io.samples import write_astronaut_clip

    scanner = Scanner(detector, config=ScanConfig())
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(source) if source else write_astronaut_clip(Path(tmp) / "astronaut.mp4", n_frames=50)
        first, rest = Path(tmp) / "first", Path(tmp) / "rest"
        first.mkdir()
        rest.mkdir()
        tenth = max(1, files // 10)
        for i in range(files):
            shutil.copy(src, (first if i < tenth else rest) / f"clip_{i:04d}{src.suffix}")
        t = time.perf_counter()
        scan_paths([first], scanner, out_dir=Path(tmp) / "out1")
        early = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        run = scan_paths([rest], scanner, out_dir=Path(tmp) / "out2")
        wall = time.perf_counter() - t
        late = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"files": files, "seconds": round(wall, 1), "seconds_per_file": round(wall / files, 3),
            "errors": run.summary.errors, "peak_rss_mib_after_first_tenth": round(early),
            "peak_rss_mib_after_all": round(late), "peak_growth_mib": round(late - early)}

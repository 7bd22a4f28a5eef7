"""One file's windows through the active evidence streams: what scan shows per window and what the
protocol tables hold, computed by the same code (``measure_windows``)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from detector.data.windows import WindowConfig, iter_windows, window_plan_of
from detector.evidence.streams import Stream, StreamScore, WindowContext
from generator.io.video import MediaReader


@dataclasses.dataclass
class WindowEvidence:
    """Every stream's evidence about one window, and the fused probability of fake."""

    index: int
    start: float  # seconds
    end: float
    frames: list[int]  # the frame indices read (bursts of neighbours)
    face_found: int  # of those, frames with the face
    face_px: float  # median face size there (landmark box, pixels of the file); NaN: no face
    scores: list[StreamScore]
    probability_fake: float | None = None  # the stacked fusion's, when one is loaded

    def features(self) -> dict[str, float]:
        """Every stream's numbers as ``stream:feature``, plus ``stream:logit``."""
        out = {}
        for s in self.scores:
            out.update({f"{s.stream}:{k}": v for k, v in s.features.items()})
            out[f"{s.stream}:logit"] = np.nan if s.logit is None else s.logit
        return out

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"index": self.index, "start": self.start, "end": self.end, "frames": self.frames,
                "face_found": self.face_found,
                "face_px": None if not np.isfinite(self.face_px) else round(float(self.face_px), 1),
                "probability_fake": None if self.probability_fake is None
                else round(self.probability_fake, 5),
                "streams": [s.to_dict() for s in self.scores]}


@dataclasses.dataclass(frozen=True)
class Coverage:
    """How the windows cover the file."""

    windows: int
    seconds: float
    complete: bool  # False: a long file scored on windows spread over it, with gaps


def measure_windows(path: str | os.PathLike | MediaReader, streams: list[Stream], backend, detector=None,
                    manifest: dict | None = None, config: WindowConfig = WindowConfig(),
                    face_index: int = 0) -> tuple[list[WindowEvidence], Coverage]:
    """Every window of ``path`` through ``streams`` (one window in memory at a time)."""
    reader = path if isinstance(path, MediaReader) else MediaReader(path)
    try:
        plan = window_plan_of(reader.info, config)
        out = []
        for w in iter_windows(reader, backend, config, face_index):
            ctx = WindowContext(w, manifest, detector)
            out.append(WindowEvidence(w.index, w.start, w.end, [int(i) for i in w.frame_indices],
                                      int(w.found.sum()), w.face_size / w.scale,
                                      [s.evaluate(ctx) for s in streams]))
        seconds = reader.info.duration if reader.info.kind == "video" else 0.0
        # complete: every frame lies in a scored window (a truncated file's unreadable tail does not)
        complete = plan.complete and len(out) == len(plan.ranges)
        return out, Coverage(len(out), round(float(seconds), 3), complete)
    finally:
        if reader is not path:
            reader.close()


def fuse_windows(windows: list[WindowEvidence], stack) -> None:
    """Set each window's ``probability_fake`` from the stacked fusion (``detector.evidence.stack``);
    a valid manifest that declares generation lifts it to that stream's own probability."""
    from detector.evidence.stack import WindowTable

    if not windows:
        return
    n = len(windows)
    table = WindowTable.from_features([w.features() for w in windows], np.arange(n), np.zeros(n, int),
                                      np.zeros(n))
    fused = stack.predict(table)
    for w, p in zip(windows, fused):
        declared = [s.probability for s in w.scores if s.stream == "provenance" and s.logit is not None]
        w.probability_fake = float(max([p, *declared]))


@dataclasses.dataclass(frozen=True)
class StreamSummary:
    """One stream over the file: its probability in its most suspicious window, and what it saw there."""

    stream: str
    probability_fake: float | None  # None: the stream gave no score (unfitted, or nothing measured)
    window: int | None
    explanation: str
    in_verdict: bool  # fused into the verdict (else shown for the analyst only)

    def to_dict(self) -> dict:
        """JSON-ready."""
        d = dataclasses.asdict(self)
        if d["probability_fake"] is not None:
            d["probability_fake"] = round(d["probability_fake"], 5)
        return d


def summarise_streams(windows: list[WindowEvidence], fused: list[str]) -> list[StreamSummary]:
    """Per stream, its most suspicious window (the first window where it scored nothing)."""
    out = []
    names = [s.stream for s in windows[0].scores] if windows else []
    for k, name in enumerate(names):
        scored = [(w.scores[k].probability, w) for w in windows if w.scores[k].probability is not None]
        if scored:
            p, w = max(scored, key=lambda t: t[0])
        else:
            p, w = None, windows[0]
        out.append(StreamSummary(name, p, w.index, w.scores[k].explanation, name in fused))
    return out

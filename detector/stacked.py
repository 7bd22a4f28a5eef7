"""Scan's stacked verdict: which stream bundle applies, which streams it runs, and the call it makes
from the file's windows (``detector.evidence.stack`` fits the bundle; ``sfumato detect lomo`` makes one).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from detector.evidence.clip import WindowEvidence
from detector.evidence.stack import BucketCheck, StreamBundle, bucket_of
from detector.evidence.streams import Stream, create_stream, stream_names
from generator.errors import BadInputError

BUNDLED_STREAMS = Path(__file__).resolve().parent / "weights" / "sfumato_streams.json"
AUTO, OFF = "auto", "off"


def resolve_bundle(spec: str, detector_sha256: str) -> tuple[StreamBundle | None, str | None]:
    """The bundle ``spec`` names (auto: the shipped one, where it was fitted on this frame classifier;
    off: none; else a bundle file), and its path."""
    if spec == OFF:
        return None, None
    path = BUNDLED_STREAMS if spec == AUTO else Path(spec)
    if not path.is_file():
        if spec == AUTO:
            return None, None
        raise BadInputError(f"stream bundle {path} not found (make one with `sfumato detect lomo --fit`)")
    bundle = StreamBundle.load(path)
    fitted = bundle.fitted_on.get("detector_sha256")
    if fitted != detector_sha256:
        if spec == AUTO:
            return None, None  # the shipped fusion read another classifier's scores: not for this one
        raise BadInputError(f"{path} was fitted on the frame classifier {str(fitted)[:12]}..., not on "
                            f"this detector ({detector_sha256[:12]}...): refit it with "
                            "`sfumato detect lomo --fit`")
    return bundle, str(path)


def stream_set(bundle: StreamBundle) -> list[Stream]:
    """Every registered stream with the bundle's fitted model where it has one: the fused ones first,
    then those shown to the analyst but left out of the verdict (the protocol found no gain)."""
    names = list(bundle.stack.streams) + [n for n in stream_names() if n not in bundle.stack.streams]
    return [create_stream(n, bundle.stack.models.get(n)) for n in names]


@dataclasses.dataclass(frozen=True)
class StackedCall:
    """The file's probability (its most suspicious window's) and where the verdict starts for it."""

    probability_fake: float
    window: WindowEvidence
    buckets: dict[str, str]
    threshold: float
    fake_from: float  # raised above the calibration's where a bucket missed the stated rate
    widened: list[BucketCheck]


def stacked_call(windows: list[WindowEvidence], bundle: StreamBundle, info) -> StackedCall | None:
    """The call from fused windows (None: no window was fused)."""
    fused = [w for w in windows if w.probability_fake is not None]
    if not fused:
        return None
    top = max(fused, key=lambda w: w.probability_fake)
    sizes = [w.face_px for w in windows if np.isfinite(w.face_px)]
    buckets = bucket_of(float(np.median(sizes)) if sizes else float("nan"),
                        info.bits_per_pixel if info.kind == "video" else float("nan"),
                        info.duration if info.kind == "video" else 0.0)
    fake_from, widened = bundle.fake_from(buckets)
    return StackedCall(float(top.probability_fake), top, buckets, bundle.calibration.threshold, fake_from,
                       widened)

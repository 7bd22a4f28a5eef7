"""Kinds of evidence ("streams") behind one interface, in a registry like the model presets.

A stream measures named numbers on one window of a video (``measure``), turns them into its own
log-odds of fake when it has a fitted model (``score``), and says in words what it saw (``explain``).
``needs`` names what it reads from the window context, so scan decodes only what the active streams
need. A new kind of evidence is one new module here that calls ``register``; scan, the stacked
fusion, calibration, the report and the leave-one-method-out protocol pick it up by name.
"""

from __future__ import annotations

from detector.evidence.streams import dynamics, frames, provenance  # noqa: F401,E402  (registration)
from detector.evidence.streams.base import (
    STREAMS,
    Stream,
    StreamScore,
    WindowContext,
    create_stream,
    register,
    stream_names,
)

__all__ = ["STREAMS", "Stream", "StreamScore", "WindowContext", "create_stream", "register",
           "stream_names"]

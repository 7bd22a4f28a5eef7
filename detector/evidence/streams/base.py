"""The stream interface and its registry (see the package docstring)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from detector.data.windows import Window
from detector.evidence.fusion import FusionModel
from generator.errors import BadInputError


@dataclasses.dataclass
class WindowContext:
    """What scan has decoded and loaded for one window; streams read what they ``need``."""

    window: Window
    manifest: dict | None = None  # the provenance check's report (``Verification.to_dict()``)
    detector: object | None = None  # the frame classifier (``detector.model.Detector``)


@dataclasses.dataclass(frozen=True)
class StreamScore:
    """One stream's evidence about one window."""

    stream: str
    logit: float | None  # log-odds of fake by the stream's own model; None: no score (nothing seen)
    features: dict[str, float]  # what it measured (NaN where it could not)
    explanation: str  # in words a non-specialist can check

    @property
    def probability(self) -> float | None:
        """The stream's own probability of fake."""
        return None if self.logit is None else float(1.0 / (1.0 + np.exp(-self.logit)))

    def to_dict(self) -> dict:
        """JSON-ready (NaN -> None, rounded)."""
        def clean(v):
            return None if v is None or not np.isfinite(v) else round(float(v), 5)

        return {"stream": self.stream, "logit": clean(self.logit), "probability": clean(self.probability),
                "features": {k: clean(v) for k, v in self.features.items()},
                "explanation": self.explanation}


class Stream:
    """One kind of evidence. Subclasses set ``name``, ``needs`` and ``feature_names`` and implement
    ``measure``; a learned stream keeps its fitted ``model`` (a logistic regression, JSON)."""

    name: str = ""
    needs: frozenset[str] = frozenset()  # "frames", "points", "detector", "manifest"
    feature_names: tuple[str, ...] = ()
    learned: bool = True  # False: fixed rules (provenance), never fitted

    def __init__(self, model: FusionModel | None = None):
        self.model = model

    def measure(self, ctx: WindowContext) -> tuple[dict[str, float], object]:
        """Named numbers about the window, and facts for ``explain``."""
        raise NotImplementedError

    def score(self, features: dict[str, float]) -> float | None:
        """Log-odds of fake from the stream's fitted model (None: unfitted, or nothing measured)."""
        if self.model is None or not any(np.isfinite(features.get(f, np.nan)) for f in self.model.features):
            return None
        p = float(np.clip(self.model.predict([features])[0], 1e-6, 1 - 1e-6))
        return float(np.log(p / (1 - p)))

    def explain(self, features: dict[str, float], facts: object, logit: float | None) -> str:
        """What the stream saw, in words."""
        return ""

    def evaluate(self, ctx: WindowContext) -> StreamScore:
        """measure, score and explain one window."""
        features, facts = self.measure(ctx)
        logit = self.score(features)
        return StreamScore(self.name, logit, features, self.explain(features, facts, logit))


STREAMS: dict[str, Callable[..., Stream]] = {}


def register(cls: type[Stream]) -> type[Stream]:
    """Class decorator: make a stream available by its ``name``."""
    if not cls.name or cls.name in STREAMS:
        raise ValueError(f"stream name {cls.name!r} is empty or taken")
    STREAMS[cls.name] = cls
    return cls


def stream_names() -> list[str]:
    """The registered streams, in registration order."""
    return list(STREAMS)


def create_stream(name: str, model: FusionModel | None = None) -> Stream:
    """A registered stream by name, with its fitted model if any."""
    if name not in STREAMS:
        raise BadInputError(f"unknown evidence stream {name!r}; registered: {', '.join(STREAMS)}")
    return STREAMS[name](model)

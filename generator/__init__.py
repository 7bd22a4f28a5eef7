"""sfumato's generator package: the face pipeline, the few-shot talking-head model (E, G, D), its
training, fine-tuning and inference, the main `generate` job and C2PA provenance."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sfumato")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

"""sfumato's error types: one base class, so the CLI can turn any of them into one clear line."""

from __future__ import annotations


class SfumatoError(Exception):
    """Base of every error sfumato raises on purpose (bad input, missing files, no face, ...)."""


class BadInputError(SfumatoError):
    """An input file or argument that cannot be used (empty, wrong type, unreadable, too small)."""


class VideoReadError(BadInputError):
    """A file that is not a decodable video or image."""


class VideoWriteError(SfumatoError):
    """An output video that could not be written (path not writable, encoder failure)."""


class NoFaceError(SfumatoError):
    """No face was found where one was needed."""


class MissingWeightsError(SfumatoError):
    """A local weight file the user must provide is absent; the message names it and where to put it."""


class ConfigMismatchError(SfumatoError):
    """An output folder or checkpoint was made with other settings than the ones asked for now."""

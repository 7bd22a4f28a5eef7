"""What the export formats and the folder import share: collision-free names, JSON bytes, the
compression levels a row may name."""

from __future__ import annotations

import collections
import hashlib
import json

from detector.data.schema import COMPRESSIONS

DATASET_NAME = "sfumato"  # DeepfakeBench dataset name and the prefix of its label names
KNOWN_COMPRESSIONS = (*COMPRESSIONS, "unknown")


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def unique_names(keys: list[str], names: list[str]) -> dict[str, str]:
    """Map each key to its name, suffixing names that collide with a hash of the key, so two rows
    never share a folder or file even when their slugs are equal."""
    counts = collections.Counter(n.lower() for n in names)  # case-insensitive file systems too
    return {k: (n if counts[n.lower()] == 1 else f"{n}-{_short_hash(k)}") for k, n in zip(keys, names)}


def json_bytes(obj: object, indent: int | None = 1) -> bytes:
    """``obj`` as JSON text with a final newline, keys in their own order."""
    return (json.dumps(obj, indent=indent, sort_keys=False) + "\n").encode()


def unperturbed(perturbation: str | None) -> bool:
    """True for a row that is no perturbed copy (older metadata leaves the field empty)."""
    return perturbation in ("none", "", None)

"""Provenance: a valid C2PA manifest that declares generation is evidence of fake, by rule.

The absence of a manifest says nothing (most real uploads carry none), so this stream only ever
raises the odds; an invalid manifest (altered after signing, or forged) is reported, not scored.
"""

from __future__ import annotations

from detector.evidence.streams.base import Stream, WindowContext, register

DECLARED_LOGIT = 9.0  # p(fake) ~ 0.9999: the file's own signed statement that it was generated


@register
class Provenance(Stream):
    """The C2PA state of the file, the same for every window."""

    name = "provenance"
    needs = frozenset({"manifest"})
    feature_names = ("manifest_declares_generated", "manifest_invalid")
    learned = False

    def measure(self, ctx: WindowContext) -> tuple[dict[str, float], object]:
        m = ctx.manifest or {}
        state = m.get("state", "Absent")
        generated = state in ("Valid", "Trusted") and bool(m.get("generation"))
        return ({"manifest_declares_generated": float(generated),
                 "manifest_invalid": float(state == "Invalid")}, state)

    def score(self, features: dict[str, float]) -> float | None:
        return DECLARED_LOGIT if features.get("manifest_declares_generated") == 1.0 else None

    def explain(self, features: dict[str, float], facts: object, logit: float | None) -> str:
        if features.get("manifest_declares_generated") == 1.0:
            return f"a {facts.lower()} C2PA manifest in the file declares that it was generated"
        if features.get("manifest_invalid") == 1.0:
            return "the file's C2PA manifest does not validate: it was altered after signing (or forged)"
        if facts in ("Valid", "Trusted"):
            return "a valid C2PA manifest, with no statement that the picture was generated"
        return "no C2PA manifest (most real uploads carry none: this is no evidence either way)"

"""Verify a file's C2PA manifest: Trusted, Valid (untrusted signer), Invalid (with the codes),
Absent or Unsupported, plus sfumato's generation assertion when there is one. ``scan`` uses this."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from generator.provenance.keys import KeyPaths, ProvenanceError, default_keys_dir
from generator.provenance.manifest import _EXTENSION_KIND, GENERATION_LABEL, _context, sniff_mime

TRUSTED, VALID, INVALID, ABSENT, UNSUPPORTED = "Trusted", "Valid", "Invalid", "Absent", "Unsupported"
# Exit status of `sfumato verify` per state; with several files the worst (highest) wins.
EXIT_CODES = {TRUSTED: 0, VALID: 10, ABSENT: 11, UNSUPPORTED: 12, INVALID: 13}


@dataclasses.dataclass
class Verification:
    """What a file's provenance says."""

    path: str
    state: str
    codes: list[str] = dataclasses.field(default_factory=list)  # failure codes
    informational: list[str] = dataclasses.field(default_factory=list)
    generation: dict | None = None  # sfumato's assertion, if present
    title: str | None = None
    claim_generator: str | None = None
    signer: dict | None = None
    actions: list[str] = dataclasses.field(default_factory=list)
    parents: int = 0  # earlier manifests kept as parent ingredients
    message: str = ""

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def trust_anchors(files: list[str | Path] = (), use_local_ca: bool = True) -> str | None:
    """PEM text of the trust anchors: the given files plus, by default, the local CA of keys init."""
    pems = []
    for f in files:
        try:
            pems.append(Path(f).read_text())
        except OSError as exc:
            raise ProvenanceError(f"cannot read trust anchor file {f}: {exc.strerror}") from exc
    local = KeyPaths(default_keys_dir()).ca_cert
    if use_local_ca and local.is_file():
        pems.append(local.read_text())
    return "\n".join(pems) or None


def verify_file(path: str | Path, trust: list[str | Path] = (), use_local_ca: bool = True
                ) -> Verification:
    """Read and validate ``path``'s manifest (offline) against the trust anchors."""
    import c2pa

    p = Path(path)
    mime = sniff_mime(p)  # raises for missing / empty files
    if mime == "application/octet-stream":
        return Verification(str(p), UNSUPPORTED, message="not a media type C2PA can carry")
    ctx = _context(False, trust_anchors(trust, use_local_ca))
    try:
        reader = c2pa.Reader.try_create(str(p), context=ctx)
    except c2pa.C2paError.NotSupported:
        return Verification(str(p), UNSUPPORTED, message=f"{mime} cannot carry a C2PA manifest")
    except c2pa.C2paError as exc:  # a manifest is there but cannot even be parsed
        return Verification(str(p), INVALID, ["manifest.unreadable"],
                            message=str(exc).splitlines()[0])
    expected = _EXTENSION_KIND.get(p.suffix.lower())
    disguise = (f"; note: the content is {mime}, not what its {p.suffix} extension says"
                if expected and expected != mime else "")
    if reader is None:
        return Verification(str(p), ABSENT, message="no C2PA manifest" + disguise)
    with reader:
        state = reader.get_validation_state() or INVALID
        results = reader.get_validation_results() or {}
        store = json.loads(reader.json())
    active = results.get("activeManifest", {})
    failures = [f["code"] for f in active.get("failure", [])]
    for ing in results.get("ingredientDeltas", []) or []:
        failures += [f["code"] for f in ing.get("validationDeltas", {}).get("failure", [])]
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    out = Verification(str(p), state if state in (TRUSTED, VALID, INVALID) else INVALID,
                       codes=failures,
                       informational=[f["code"] for f in active.get("informational", [])])
    out.title = manifest.get("title")
    gens = manifest.get("claim_generator_info") or [{}]
    out.claim_generator = " ".join(str(gens[0].get(k, "")) for k in ("name", "version")).strip()
    sig = manifest.get("signature_info") or {}
    out.signer = {k: sig.get(k) for k in ("issuer", "common_name", "alg", "time") if sig.get(k)}
    for a in manifest.get("assertions", []):
        if a.get("label") == GENERATION_LABEL:
            out.generation = a.get("data")
        elif a.get("label", "").startswith("c2pa.actions"):
            out.actions += [x.get("action") for x in a.get("data", {}).get("actions", [])]
    out.parents = sum(i.get("relationship") == "parentOf" for i in manifest.get("ingredients", []))
    if out.state == VALID and "signingCredential.untrusted" in failures:
        out.message = "valid signature from a signer that is not in the trust anchors"
    elif out.state == INVALID:
        out.message = ", ".join(failures) or "manifest failed validation"
    out.message += disguise
    return out


def exit_code(results: list[Verification]) -> int:
    """The exit status for a set of results: the worst state's code."""
    return max((EXIT_CODES[r.state] for r in results), default=0)

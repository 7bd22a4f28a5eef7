"""Verify a file's C2PA manifest: Trusted, Valid (untrusted signer), Invalid (with the codes),
Absent or Unsupported, plus sfumato's generation assertion when there is one. ``scan`` uses this."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from generator.provenance.keys import KeyPaths, ProvenanceError, default_keys_dir
from generator.provenance.manifest import EXTENSION_KIND, GENERATION_LABEL, c2pa_context, sniff_mime

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
    ctx = c2pa_context(False, trust_anchors(trust, use_local_ca))
    try:
        reader = c2pa.Reader.try_create(str(p), context=ctx)
    except c2pa.C2paError.NotSupported:
        return Verification(str(p), UNSUPPORTED, message=f"{mime} cannot carry a C2PA manifest")
    except c2pa.C2paError as exc:  # a manifest is there but cannot even be parsed
        return Verification(str(p), INVALID, ["manifest.unreadable"],
                            message=str(exc).splitlines()[0])
    expected = EXTENSION_KIND.get(p.suffix.lower())
    disguise = (f"; note: the content is {mime}, not what its {p.suffix} extension says"
                if expected and expected != mime else "")
    if reader is None:
        return Verification(str(p), ABSENT, message="no C2PA manifest" + disguise)
    with reader:
        state = reader.get_validation_state() or INVALID
        results = reader.get_validation_results() or {}
        store = json.loads(reader.json())
        manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
        sig = manifest.get("signature_info") or {}
        chain = signer_chain(reader, sig.get("cert_serial_number"))
    active = results.get("activeManifest", {})
    failures = [f["code"] for f in active.get("failure", [])]
    for ing in results.get("ingredientDeltas", []) or []:
        failures += [f["code"] for f in ing.get("validationDeltas", {}).get("failure", [])]
    out = Verification(str(p), state if state in (TRUSTED, VALID, INVALID) else INVALID,
                       codes=failures,
                       informational=[f["code"] for f in active.get("informational", [])])
    out.title = manifest.get("title")
    gens = manifest.get("claim_generator_info") or [{}]
    out.claim_generator = " ".join(str(gens[0].get(k, "")) for k in ("name", "version")).strip()
    out.signer = {k: sig.get(k) for k in ("issuer", "common_name", "alg", "time") if sig.get(k)}
    # Names can be copied by anyone with their own CA: the fingerprints tell signers apart.
    out.signer.update(chain)
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


def _der_certificates(blob: bytes) -> list:
    """The X.509 certificates embedded (DER) in a manifest store's bytes, in order."""
    from cryptography import x509

    certs, i = [], blob.find(b"\x30\x82")
    while i >= 0:
        n = int.from_bytes(blob[i + 2:i + 4], "big") + 4  # a SEQUENCE with a two-byte length
        try:
            certs.append(x509.load_der_x509_certificate(blob[i:i + n]))
            i = blob.find(b"\x30\x82", i + n)
        except ValueError:
            i = blob.find(b"\x30\x82", i + 1)
    return certs


def fingerprint(cert) -> str:
    """SHA-256 of a certificate's DER bytes, colon-separated hex as ``sfumato keys show`` prints it."""
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA256()).hex(":")


def signer_chain(reader, serial: str | None) -> dict:
    """The active manifest's signing certificate, found by its serial number among the manifest
    store's embedded certificates, and its issuer's: SHA-256 fingerprints, DNs, expiry ({} if none)."""
    import io

    if not serial:
        return {}
    detailed = json.loads(reader.detailed_json())  # the plain JSON does not name the signature box
    active = detailed.get("manifests", {}).get(detailed.get("active_manifest"), {})
    buf = io.BytesIO()
    try:
        reader.resource_to_stream((active.get("claim") or {}).get("signature", ""), buf)
    except Exception:  # noqa: BLE001 - c2pa raises its own types; no certificate, no fingerprint
        return {}
    certs = _der_certificates(buf.getvalue())
    leaf = next((c for c in certs if str(c.serial_number) == str(serial)), None)
    if leaf is None:
        return {}
    out = {"cert_sha256": fingerprint(leaf), "cert_serial": str(leaf.serial_number),
           "subject_dn": leaf.subject.rfc4514_string(), "issuer_dn": leaf.issuer.rfc4514_string(),
           "not_after": leaf.not_valid_after_utc.isoformat()}
    ca = next((c for c in certs if c.subject == leaf.issuer and c is not leaf), None)
    if ca is not None:
        out["issuer_sha256"] = fingerprint(ca)
    return out


def exit_code(results: list[Verification]) -> int:
    """The exit status for a set of results: the worst state's code."""
    return max((EXIT_CODES[r.state] for r in results), default=0)

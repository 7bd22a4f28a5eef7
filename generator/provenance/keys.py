"""Signing keys for C2PA: a local root CA and an ES256 signing certificate, or the user's own.

Validity, deliberately: without a time-stamp authority a C2PA signature carries no trusted time, so
it is checked against the present and a file stops verifying the day its signing certificate
expires. Local keys therefore get a long-lived leaf (10 years) under a 20-year root; pass a
time-stamp authority (``tsa_url``) to make signatures outlive their certificate.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Callable
from pathlib import Path

from generator.errors import SfumatoError
from generator.io.files import write_bytes_atomic

KEYS_ENV = "SFUMATO_KEYS_DIR"
PASSPHRASE_ENV = "SFUMATO_KEY_PASSPHRASE"
CA_DAYS = 20 * 365
LEAF_DAYS = 10 * 365
EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4"  # the EKU c2pa-rs accepts without extra trust configuration
C2PA_SIGNING = "1.3.6.1.4.1.62558.2.1"  # C2PA document signing (needs a trust_config entry)


class ProvenanceError(SfumatoError):
    """A key, certificate or manifest problem (missing, unreadable, wrong passphrase, expired, ...)."""


@dataclasses.dataclass(frozen=True)
class KeyPaths:
    """The files of a key folder made by ``init_keys``."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def cert(self) -> Path:
        return self.root / "signer.pem"

    @property
    def key(self) -> Path:
        return self.root / "signer.key"

    @property
    def chain(self) -> Path:
        """Leaf then CA, the order c2pa wants."""
        return self.root / "chain.pem"


def default_keys_dir() -> Path:
    """``$SFUMATO_KEYS_DIR``, else ``$XDG_CONFIG_HOME/sfumato/keys`` (~/.config/sfumato/keys)."""
    if os.environ.get(KEYS_ENV):
        return Path(os.environ[KEYS_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "sfumato" / "keys"


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (0600), atomically."""
    write_bytes_atomic(path, data)
    os.chmod(path, 0o600)


def _encryption(passphrase: str | None):
    from cryptography.hazmat.primitives import serialization

    if passphrase:
        return serialization.BestAvailableEncryption(passphrase.encode())
    return serialization.NoEncryption()


def make_certificates(common_name: str = "sfumato signer", organization: str = "sfumato (local)",
                      leaf_days: float = LEAF_DAYS, ca_days: float = CA_DAYS,
                      not_before: datetime.datetime | None = None, leaf_eku: bool = True):
    """A P-256 root CA and ES256 leaf with the extensions c2pa-rs requires (provenance.md).

    Returns (ca_key, ca_cert, leaf_key, leaf_cert) as cryptography objects. ``not_before`` and
    ``leaf_days`` move the validity window (tests make expired and not-yet-valid leaves with them).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    start = not_before or (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} root CA"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, encipher_only=False, decipher_only=False)
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=ca_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True,
                                     **usage), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                           x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    leaf_cert = (
        x509.CertificateBuilder().subject_name(leaf_name).issuer_name(ca_name)
        .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=leaf_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     **usage), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()),
                       critical=False))
    if leaf_eku:  # c2pa-rs requires it; tests leave it out to check the refusal
        leaf_cert = leaf_cert.add_extension(
            x509.ExtendedKeyUsage([x509.ObjectIdentifier(EMAIL_PROTECTION)]), critical=False)
    leaf_cert = leaf_cert.sign(ca_key, hashes.SHA256())
    return ca_key, ca_cert, leaf_key, leaf_cert


def pem(cert) -> bytes:
    """A certificate as PEM bytes."""
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def private_pem(key, passphrase: str | None = None) -> bytes:
    """A private key as PKCS#8 PEM, encrypted when a passphrase is given."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             _encryption(passphrase))


def init_keys(directory: str | Path | None = None, passphrase: str | None = None,
              common_name: str = "sfumato signer", organization: str = "sfumato (local)",
              force: bool = False, leaf_days: int = LEAF_DAYS) -> dict:
    """Create a root CA and a signing certificate in ``directory`` (keys 0600); describe them."""
    paths = KeyPaths(Path(directory) if directory else default_keys_dir())
    if paths.key.exists() and not force:
        raise ProvenanceError(f"{paths.root} already holds keys; use --force to replace them "
                              "(files signed with the old key will no longer be Trusted)")
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        os.chmod(paths.root, 0o700)
    except OSError as exc:
        raise ProvenanceError(f"cannot create key folder {paths.root}: {exc.strerror}") from exc
    ca_key, ca_cert, leaf_key, leaf_cert = make_certificates(common_name, organization, leaf_days)
    _write_private(paths.ca_key, private_pem(ca_key, passphrase))
    _write_private(paths.key, private_pem(leaf_key, passphrase))
    write_bytes_atomic(paths.ca_cert, pem(ca_cert))
    write_bytes_atomic(paths.cert, pem(leaf_cert))
    write_bytes_atomic(paths.chain, pem(leaf_cert) + pem(ca_cert))
    return describe_keys(paths.root)


def _load_certs(path: Path) -> list:
    from cryptography import x509

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProvenanceError(f"cannot read certificate file {path}: {exc.strerror}") from exc
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ProvenanceError(f"{path}: not a PEM certificate file") from exc
    return certs


def describe_certificate(cert) -> dict:
    """Subject, issuer, fingerprints, validity and whether it is valid now."""
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(":"),
        "sha1": cert.fingerprint(hashes.SHA1()).hex(":"),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "valid_now": cert.not_valid_before_utc <= now <= cert.not_valid_after_utc,
        "days_left": (cert.not_valid_after_utc - now).days,
    }


def describe_keys(directory: str | Path | None = None) -> dict:
    """What a key folder holds (never the private keys themselves)."""
    paths = KeyPaths(Path(directory) if directory else default_keys_dir())
    if not paths.cert.is_file():
        raise ProvenanceError(f"no signing certificate in {paths.root}: run 'sfumato keys init' "
                              "or pass your own --cert/--key")
    out = {"dir": str(paths.root), "signer": describe_certificate(_load_certs(paths.cert)[0])}
    if paths.ca_cert.is_file():
        out["ca"] = describe_certificate(_load_certs(paths.ca_cert)[0])
    out["private_key_mode"] = oct(paths.key.stat().st_mode & 0o777) if paths.key.exists() else None
    return out


def check_signing_certificate(cert) -> None:
    """Refuse a leaf that c2pa would reject or that would make files Invalid at once."""
    from cryptography import x509

    def ext(kind):
        try:
            return cert.extensions.get_extension_for_class(kind).value
        except x509.ExtensionNotFound:
            return None

    subject = cert.subject.rfc4514_string()
    usage = ext(x509.KeyUsage)
    if usage is None or not usage.digital_signature:
        raise ProvenanceError(f"certificate {subject} lacks KeyUsage digitalSignature, which C2PA "
                              "requires of a signing certificate")
    eku = ext(x509.ExtendedKeyUsage)
    if eku is None or not {o.dotted_string for o in eku} & {EMAIL_PROTECTION, C2PA_SIGNING}:
        raise ProvenanceError(f"certificate {subject} lacks an ExtendedKeyUsage C2PA accepts "
                              "(emailProtection or C2PA document signing)")
    if ext(x509.AuthorityKeyIdentifier) is None:
        raise ProvenanceError(f"certificate {subject} lacks an AuthorityKeyIdentifier")
    now = datetime.datetime.now(datetime.timezone.utc)
    if now < cert.not_valid_before_utc:
        raise ProvenanceError(f"certificate {subject} is not valid yet (from "
                              f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC)")
    if now > cert.not_valid_after_utc:
        raise ProvenanceError(f"certificate {subject} expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
                              "make a new one ('sfumato keys init --force')")


def load_private_key(path: Path, passphrase: str | None = None):
    """Load a PEM private key, with a clear error for a missing file or a wrong passphrase."""
    from cryptography.hazmat.primitives import serialization

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProvenanceError(f"private key {path} not found: run 'sfumato keys init' or pass "
                              "--key") from None
    except OSError as exc:
        raise ProvenanceError(f"cannot read private key {path}: {exc.strerror}") from exc
    pw = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
    try:
        return serialization.load_pem_private_key(data, password=pw.encode() if pw else None)
    except TypeError as exc:  # encrypted key without passphrase, or a passphrase for a plain key
        need = "is encrypted: give its passphrase" if not pw else "is not encrypted: drop the passphrase"
        raise ProvenanceError(f"private key {path} {need} (${PASSPHRASE_ENV})") from exc
    except ValueError as exc:
        if b"ENCRYPTED" in data:
            raise ProvenanceError(f"wrong passphrase for private key {path}") from exc
        raise ProvenanceError(f"{path}: not a PEM private key") from exc


@dataclasses.dataclass
class SigningIdentity:
    """Who signs: a certificate chain (leaf first) and a function that signs bytes.

    Build it from a key folder (``from_keys_dir``), from your own PEM files (``from_files``), or
    around your own signing function (``from_callback``) so a key can stay in an HSM or a KMS.
    """

    chain_pem: bytes
    sign: Callable[[bytes], bytes]
    alg: str = "es256"

    @classmethod
    def from_files(cls, cert: str | Path, key: str | Path, passphrase: str | None = None
                   ) -> SigningIdentity:
        """A PEM chain (leaf first, CA after) and its leaf's private key."""
        chain = _load_certs(Path(cert))
        check_signing_certificate(chain[0])
        private = load_private_key(Path(key), passphrase)
        return cls.from_key(private, b"".join(pem(c) for c in chain))

    @classmethod
    def from_keys_dir(cls, directory: str | Path | None = None, passphrase: str | None = None
                      ) -> SigningIdentity:
        """The keys made by ``sfumato keys init`` (default folder if None)."""
        paths = KeyPaths(Path(directory) if directory else default_keys_dir())
        if not paths.chain.is_file():
            raise ProvenanceError(f"no signing keys in {paths.root}: run 'sfumato keys init' first, "
                                  "or pass --cert and --key")
        return cls.from_files(paths.chain, paths.key, passphrase)

    @classmethod
    def from_key(cls, private_key, chain_pem: bytes) -> SigningIdentity:
        """Wrap a cryptography private key (EC P-256/P-384 or Ed25519)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            curve = private_key.curve.name
            alg, digest = {"secp256r1": ("es256", hashes.SHA256()),
                           "secp384r1": ("es384", hashes.SHA384())}.get(curve, (None, None))
            if alg is None:
                raise ProvenanceError(f"unsupported EC curve {curve}; use P-256 or P-384")
            return cls(chain_pem, lambda data: private_key.sign(data, ec.ECDSA(digest)), alg)
        if isinstance(private_key, ed25519.Ed25519PrivateKey):
            return cls(chain_pem, private_key.sign, "ed25519")
        raise ProvenanceError(f"unsupported key type {type(private_key).__name__}; use EC or Ed25519")

    @classmethod
    def from_callback(cls, sign: Callable[[bytes], bytes], chain_pem: bytes | str,
                      alg: str = "es256") -> SigningIdentity:
        """Your own signing function (DER ECDSA or raw Ed25519 signature of the given bytes)."""
        chain = chain_pem.encode() if isinstance(chain_pem, str) else chain_pem
        return cls(chain, sign, alg)

    def c2pa_signer(self, tsa_url: str | None = None):
        """A c2pa.Signer that calls back into Python (the private key never enters c2pa)."""
        import c2pa

        alg = {"es256": c2pa.C2paSigningAlg.ES256, "es384": c2pa.C2paSigningAlg.ES384,
               "ed25519": c2pa.C2paSigningAlg.ED25519}[self.alg]
        return c2pa.Signer.from_callback(self.sign, alg, self.chain_pem.decode(), tsa_url)

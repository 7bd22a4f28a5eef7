"""C2PA provenance: keys, signing, verification states and codes, tampering, bad input."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import time

import numpy as np
import pytest

from generator.io.video import write_image, write_video
from generator.provenance import (
    GenerationInfo,
    ProvenanceError,
    SigningIdentity,
    describe_keys,
    init_keys,
    sign_file,
    verify_file,
)
from generator.provenance.keys import KeyPaths, make_certificates, pem, private_pem
from tests.conftest import numbered_frames

GEN = GenerationInfo(preset="small", checkpoint_sha256="ab" * 32, shots=1, finetune_steps=0, seed=7,
                     driver_kind="builtin", source_sha256=["cd" * 32])


@pytest.fixture
def keys(tmp_path, monkeypatch):
    """A key folder made by init_keys, also the default one (so its CA is the local anchor)."""
    directory = tmp_path / "keys"
    monkeypatch.setenv("SFUMATO_KEYS_DIR", str(directory))
    monkeypatch.delenv("SFUMATO_KEY_PASSPHRASE", raising=False)
    init_keys(directory)
    return KeyPaths(directory)


@pytest.fixture
def identity(keys):
    return SigningIdentity.from_keys_dir(keys.root)


def media(tmp_path, kind: str):
    rng = np.random.default_rng(0)
    if kind == "mp4":
        path = tmp_path / "clip.mp4"
        write_video(path, numbered_frames(20, 96, 128), fps=25)
    else:
        path = tmp_path / f"image.{kind}"
        write_image(path, rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
    return path


def flip_media_bytes(path, kind: str) -> None:
    """Flip a few bytes inside the media data, away from the manifest."""
    data = bytearray(path.read_bytes())
    if kind == "png":
        at = data.index(b"IDAT") + 200
    elif kind == "mp4":
        at = data.index(b"mdat") + 500
    else:  # jpeg: entropy-coded data just before the end-of-image marker
        at = len(data) - 300
    for k in range(4):
        data[at + k] ^= 0x55
    path.write_bytes(bytes(data))


def test_keys_are_private_and_described(keys):
    for p in (keys.key, keys.ca_key):
        assert p.stat().st_mode & 0o777 == 0o600
    info = describe_keys(keys.root)
    assert info["signer"]["valid_now"] and info["signer"]["days_left"] > 3600
    assert info["ca"]["subject"] == info["signer"]["issuer"]
    assert "PRIVATE" not in str(info)
    with pytest.raises(ProvenanceError, match="already holds keys"):
        init_keys(keys.root)


@pytest.mark.parametrize("kind", ["png", "jpg", "mp4"])
def test_sign_then_verify_trusted_and_untrusted(tmp_path, identity, kind):
    src = media(tmp_path, kind)
    out = tmp_path / f"signed.{kind}"
    result = sign_file(src, identity, out, generation=GEN, ingredients=[media(tmp_path, "png")])
    assert result["output"] == str(out) and not result["parent_kept"]
    v = verify_file(out)
    assert v.state == "Trusted", v.codes
    assert v.generation["seed"] == 7 and v.generation["checkpoint_sha256"] == "ab" * 32
    assert v.actions == ["c2pa.created"] and v.claim_generator.startswith("sfumato")
    untrusted = verify_file(out, use_local_ca=False)
    assert untrusted.state == "Valid" and "signingCredential.untrusted" in untrusted.codes
    assert verify_file(src).state == "Absent"


@pytest.mark.parametrize("kind,code", [("png", "assertion.dataHash.mismatch"),
                                       ("jpg", "assertion.dataHash.mismatch"),
                                       ("mp4", "assertion.bmffHash.mismatch")])
def test_flipped_media_bytes_are_invalid_with_the_right_code(tmp_path, identity, kind, code):
    out = tmp_path / f"signed.{kind}"
    sign_file(media(tmp_path, kind), identity, out, generation=GEN)
    flip_media_bytes(out, kind)
    v = verify_file(out)
    assert v.state == "Invalid" and code in v.codes, v.codes


def test_edited_generation_assertion_is_invalid(tmp_path, identity):
    out = tmp_path / "signed.png"
    sign_file(media(tmp_path, "png"), identity, out, generation=GEN)
    data = out.read_bytes()
    assert data.count(b"builtin") == 1
    out.write_bytes(data.replace(b"builtin", b"webcam!"))
    v = verify_file(out)
    assert v.state == "Invalid" and "assertion.hashedURI.mismatch" in v.codes


def test_re_encoded_file_has_no_manifest(tmp_path, identity):
    from generator.io.video import MediaReader

    out = tmp_path / "signed.mp4"
    sign_file(media(tmp_path, "mp4"), identity, out, generation=GEN)
    with MediaReader(out) as r:
        frames = [f for _, f in r.frames()]
    write_video(tmp_path / "reencoded.mp4", frames, fps=25)
    assert verify_file(tmp_path / "reencoded.mp4").state == "Absent"


def test_re_signing_keeps_the_earlier_manifest(tmp_path, identity):
    first = tmp_path / "first.png"
    sign_file(media(tmp_path, "png"), identity, first, generation=GEN)
    second = tmp_path / "second.png"
    assert sign_file(first, identity, second)["parent_kept"]
    v = verify_file(second)
    assert v.state == "Trusted" and v.parents == 1
    assert v.actions == ["c2pa.opened", "c2pa.edited"]


def test_expired_leaf_makes_files_invalid(tmp_path):
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    ca_key, ca, key, leaf = make_certificates(leaf_days=4 / 86400, not_before=start)  # 4 s
    (tmp_path / "ca.pem").write_bytes(pem(ca))
    signer = SigningIdentity.from_key(key, pem(leaf) + pem(ca))
    out = tmp_path / "signed.png"
    sign_file(media(tmp_path, "png"), signer, out)
    time.sleep(4.5)
    v = verify_file(out, trust=[tmp_path / "ca.pem"], use_local_ca=False)
    assert v.state == "Invalid" and "signingCredential.expired" in v.codes


def _write_pair(tmp_path, **kw):
    _, ca, key, leaf = make_certificates(**kw)
    (tmp_path / "chain.pem").write_bytes(pem(leaf) + pem(ca))
    (tmp_path / "leaf.key").write_bytes(private_pem(key))
    return tmp_path / "chain.pem", tmp_path / "leaf.key"


def test_bad_certificates_are_refused(tmp_path):
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=30)
    cert, key = _write_pair(tmp_path, not_before=past, leaf_days=1)
    with pytest.raises(ProvenanceError, match="expired on"):
        SigningIdentity.from_files(cert, key)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3)
    cert, key = _write_pair(tmp_path, not_before=future)
    with pytest.raises(ProvenanceError, match="not valid yet"):
        SigningIdentity.from_files(cert, key)
    cert, key = _write_pair(tmp_path, leaf_eku=False)
    with pytest.raises(ProvenanceError, match="ExtendedKeyUsage"):
        SigningIdentity.from_files(cert, key)


def test_key_problems_are_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("SFUMATO_KEY_PASSPHRASE", raising=False)
    init_keys(tmp_path / "enc", passphrase="correct horse")
    paths = KeyPaths(tmp_path / "enc")
    assert b"ENCRYPTED" in paths.key.read_bytes()
    with pytest.raises(ProvenanceError, match="wrong passphrase"):
        SigningIdentity.from_keys_dir(paths.root, passphrase="battery staple")
    with pytest.raises(ProvenanceError, match="is encrypted"):
        SigningIdentity.from_keys_dir(paths.root)
    assert SigningIdentity.from_keys_dir(paths.root, passphrase="correct horse").alg == "es256"
    with pytest.raises(ProvenanceError, match="no signing keys"):
        SigningIdentity.from_keys_dir(tmp_path / "none")
    paths.key.unlink()
    with pytest.raises(ProvenanceError, match="not found"):
        SigningIdentity.from_keys_dir(paths.root, passphrase="correct horse")


def test_callback_signer_keeps_the_key_outside(tmp_path, keys):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(keys.key.read_bytes(), None)
    calls = []

    def hsm(data: bytes) -> bytes:  # stands in for an HSM or a KMS
        calls.append(len(data))
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    signer = SigningIdentity.from_callback(hsm, keys.chain.read_text())
    out = tmp_path / "signed.png"
    sign_file(media(tmp_path, "png"), signer, out)
    assert calls and verify_file(out).state == "Trusted"


def test_manifest_holds_no_private_material(tmp_path, identity, keys):
    from cryptography.hazmat.primitives import serialization

    out = tmp_path / "signed.png"
    sign_file(media(tmp_path, "png"), identity, out, generation=GEN)
    data = out.read_bytes()
    key = serialization.load_pem_private_key(keys.key.read_bytes(), None)
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    assert secret not in data and b"PRIVATE KEY" not in data
    assert keys.key.read_bytes()[40:80] not in data


def test_bad_inputs_leave_nothing_behind(tmp_path, identity):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("hello " * 20)
    png = media(tmp_path, "png")
    shutil.copy(png, tmp_path / "disguised.mp4")
    write_video(tmp_path / "clip.mp4", numbered_frames(5), fps=25)
    cases = {"empty.png": "empty file", "notes.png": "unsupported file type",
             "disguised.mp4": "looks like image/png", "missing.png": "no such file"}
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, message in cases.items():
        with pytest.raises(ProvenanceError, match=message):
            sign_file(tmp_path / name, identity, tmp_path / f"out_{name}")
    with pytest.raises(Exception, match="does not exist"):
        sign_file(png, identity, tmp_path / "no" / "dir" / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no partial outputs
    assert verify_file(tmp_path / "notes.png").state == "Unsupported"
    assert "extension" in verify_file(tmp_path / "disguised.mp4").message


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_exiftool_sees_the_manifest_in_a_signed_png(tmp_path, identity):
    out = tmp_path / "signed.png"
    sign_file(media(tmp_path, "png"), identity, out, generation=GEN)
    seen = subprocess.run(["exiftool", "-a", "-G1", "-JUMBF:all", str(out)], capture_output=True,
                          text=True, timeout=60).stdout
    plain = subprocess.run(["exiftool", "-a", "-G1", "-JUMBF:all", str(media(tmp_path, "png"))],
                           capture_output=True, text=True, timeout=60).stdout
    assert "JUMBF" in seen and "JUMBF" not in plain


def test_generated_media_is_signed_with_keys_made_on_first_use(tmp_path, monkeypatch, caplog):
    from generator.provenance import SigningOptions, sign_generated

    monkeypatch.setenv("SFUMATO_KEYS_DIR", str(tmp_path / "fresh_keys"))
    clip = media(tmp_path, "mp4")
    result = sign_generated(clip, GEN)
    assert result["signed"] and (tmp_path / "fresh_keys" / "signer.key").is_file()
    assert verify_file(clip).state == "Trusted"
    other = media(tmp_path, "png")
    with caplog.at_level("WARNING"):
        assert not sign_generated(other, GEN, SigningOptions(enabled=False))["signed"]
    assert "NOT signing" in caplog.text
    assert verify_file(other).state == "Absent"


def test_signers_with_the_same_names_are_told_apart_by_fingerprint(tmp_path, identity, keys):
    """Another 'sfumato keys init' CA copies the subject and issuer names; not the certificates."""
    other_dir = tmp_path / "other_keys"
    init_keys(other_dir)
    other = SigningIdentity.from_keys_dir(other_dir)
    src = media(tmp_path, "png")
    mine, theirs = tmp_path / "mine.png", tmp_path / "theirs.png"
    sign_file(src, identity, mine, generation=GEN)
    sign_file(src, other, theirs, generation=GEN)
    a, b = verify_file(mine), verify_file(theirs)
    assert (a.state, b.state) == ("Trusted", "Valid")
    for key in ("common_name", "issuer", "subject_dn", "issuer_dn"):
        assert a.signer[key] == b.signer[key]  # the names say nothing
    mine_keys, their_keys = describe_keys(keys.root), describe_keys(other_dir)
    assert a.signer["cert_sha256"] == mine_keys["signer"]["sha256"]  # what 'keys show' prints
    assert a.signer["issuer_sha256"] == mine_keys["ca"]["sha256"]
    assert b.signer["cert_sha256"] == their_keys["signer"]["sha256"] != a.signer["cert_sha256"]
    assert b.signer["issuer_sha256"] == their_keys["ca"]["sha256"] != a.signer["issuer_sha256"]

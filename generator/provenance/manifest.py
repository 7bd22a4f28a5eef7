"""Sign media with a C2PA manifest that says sfumato generated it, and with what.

The manifest: claim generator sfumato + version, a title, the action ``c2pa.created`` with digital
source type trainedAlgorithmicMedia, and sfumato's own assertion ``org.sfumato.generation`` with the
generation parameters (hashes of inputs, never the inputs). A file that already carries a manifest
keeps it as a parent ingredient (``c2pa.opened`` then ``c2pa.edited``) instead of losing it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from generator import __version__
from generator.io.files import check_writable, temp_path_beside
from generator.provenance.keys import ProvenanceError, SigningIdentity

GENERATION_LABEL = "org.sfumato.generation"
TRAINED_ALGORITHMIC = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

# What each extension should hold (checked against the magic bytes).
EXTENSION_KIND = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
    ".gif": "image/gif", ".tif": "image/tiff", ".tiff": "image/tiff", ".avif": "image/avif",
    ".heic": "image/heic", ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
    ".m4a": "audio/mp4", ".avi": "video/avi", ".wav": "audio/wav", ".mp3": "audio/mpeg",
    ".pdf": "application/pdf", ".mkv": "video/x-matroska", ".webm": "video/webm",
}
UNSUPPORTED = {"video/x-matroska", "video/webm"}  # not in c2pa-rs's list: cannot carry a manifest


@dataclasses.dataclass
class GenerationInfo:
    """sfumato's assertion: how a generated file was made (hashes, not inputs)."""

    preset: str | None = None
    checkpoint_sha256: str | None = None
    shots: int | None = None
    finetune_steps: int | None = None
    seed: int | None = None
    driver_kind: str | None = None  # "video", "landmarks", "builtin"
    source_sha256: list[str] = dataclasses.field(default_factory=list)
    driver_sha256: str | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """The assertion's data (None fields dropped)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, [], {})}
        return {"generator": "sfumato", "version": __version__, **d}


def sniff_mime(path: str | Path) -> str:
    """The file's real type from its first bytes; ProvenanceError for empty or unknown files."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(32)
    except FileNotFoundError:
        raise ProvenanceError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ProvenanceError(f"{p}: is a folder, expected a file") from None
    except OSError as exc:
        raise ProvenanceError(f"{p}: cannot read ({exc.strerror})") from exc
    if not head:
        raise ProvenanceError(f"{p}: empty file (0 bytes)")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head.startswith(b"%PDF"):
        return "application/pdf"
    if head[:4] == b"RIFF":
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/avi"}.get(
            head[8:12], "application/octet-stream")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return {b"qt  ": "video/quicktime", b"avif": "image/avif", b"heic": "image/heic",
                b"mif1": "image/heic", b"M4A ": "audio/mp4"}.get(brand, "video/mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/x-matroska"
    if head.startswith(b"ID3") or head[:2] == b"\xff\xfb":
        return "audio/mpeg"
    return "application/octet-stream"


def media_type(path: str | Path) -> str:
    """The MIME type c2pa should use; refuse unknown types and files unlike their extension."""
    p = Path(path)
    mime = sniff_mime(p)
    expected = EXTENSION_KIND.get(p.suffix.lower())
    if mime == "application/octet-stream":
        raise ProvenanceError(f"{p}: unsupported file type (not an image, video or audio file "
                              "C2PA can sign)")
    if expected and expected != mime and not (
            {expected, mime} <= {"video/mp4", "video/quicktime", "audio/mp4"}):
        raise ProvenanceError(f"{p}: looks like {mime}, not what its {p.suffix} extension says")
    if mime in UNSUPPORTED:
        raise ProvenanceError(f"{p}: {mime} cannot carry a C2PA manifest; encode to mp4 first")
    return mime


def c2pa_context(thumbnail: bool, trust_pem: str | None = None):
    """A c2pa Context: thumbnails on or off, and the trust anchors to validate against."""
    import c2pa

    settings: dict = {"builder": {"thumbnail": {"enabled": thumbnail}}}
    if trust_pem:
        settings["trust"] = {"trust_anchors": trust_pem}
    return c2pa.Context(settings=c2pa.Settings.from_dict(settings))


def has_manifest(path: str | Path) -> bool:
    """True when the file carries a C2PA manifest (valid or not)."""
    import c2pa

    try:
        return c2pa.Reader.try_create(str(path), context=c2pa_context(False)) is not None
    except c2pa.C2paError:
        return True  # a manifest is there, just not readable: still history to keep


def build_manifest(title: str, generation: GenerationInfo | dict | None, parent: bool) -> dict:
    """The manifest definition c2pa's Builder takes."""
    action = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC,
              "softwareAgent": {"name": "sfumato", "version": __version__}}
    actions = [action]
    if parent:  # c2pa requires an opened action naming the parent first, then what was done
        actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
                   {**action, "action": "c2pa.edited"}]
    assertions = [{"label": "c2pa.actions", "data": {"actions": actions}}]
    if generation is not None:
        data = generation.to_dict() if isinstance(generation, GenerationInfo) else dict(generation)
        assertions.append({"label": GENERATION_LABEL, "data": data})
    return {"claim_generator_info": [{"name": "sfumato", "version": __version__}], "title": title,
            "assertions": assertions}


def sign_file(path: str | Path, identity: SigningIdentity, out: str | Path | None = None,
              generation: GenerationInfo | dict | None = None, title: str | None = None,
              ingredients: list[str | Path] = (), thumbnail: bool = False,
              tsa_url: str | None = None) -> dict:
    """Sign ``path`` into ``out`` (default: in place), atomically; return what was done.

    ``ingredients``: source pictures to attach as ``inputTo`` ingredients. A manifest already in
    ``path`` is kept as the parent ingredient.
    """
    import c2pa

    src = Path(path)
    mime = media_type(src)
    dst = check_writable(out if out is not None else src)
    parent = has_manifest(src)
    manifest = build_manifest(title or dst.name, generation, parent)
    start = time.perf_counter()
    tmp = temp_path_beside(dst)
    try:
        builder = c2pa.Builder(manifest, context=c2pa_context(thumbnail))
        with builder:
            if parent:
                with open(src, "rb") as fh:
                    builder.add_ingredient({"title": src.name, "relationship": "parentOf",
                                            "label": "parent"}, mime, fh)
            for k, ing in enumerate(ingredients):
                with open(ing, "rb") as fh:
                    builder.add_ingredient({"title": Path(ing).name, "relationship": "inputTo",
                                            "label": f"source{k}"}, media_type(ing), fh)
            tmp.unlink()  # c2pa writes the destination itself
            builder.sign_file(str(src), str(tmp), identity.c2pa_signer(tsa_url))
        tmp.replace(dst)
    except c2pa.C2paError as exc:
        raise ProvenanceError(f"{src}: signing failed ({str(exc).splitlines()[0]})") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"input": str(src), "output": str(dst), "mime": mime, "parent_kept": parent,
            "ingredients": [str(i) for i in ingredients],
            "seconds": round(time.perf_counter() - start, 4)}


@dataclasses.dataclass(frozen=True)
class SigningOptions:
    """How commands that write generated media sign it (they all go through ``sign_generated``)."""

    enabled: bool = True  # False only by an explicit, logged user choice (--no-sign)
    keys_dir: str | None = None  # default: ~/.config/sfumato/keys, created on first use
    cert: str | None = None  # your own chain (PEM, leaf first) ...
    key: str | None = None  # ... and its private key
    tsa_url: str | None = None
    thumbnail: bool = False


def sign_generated(path: str | Path, generation: GenerationInfo | dict,
                   options: SigningOptions = SigningOptions(),
                   ingredients: list[str | Path] = ()) -> dict:
    """Sign a file sfumato just generated, in place. Local keys are made on first use."""
    import logging

    from generator.provenance.keys import KeyPaths, default_keys_dir, init_keys

    log = logging.getLogger(__name__)
    if not options.enabled:
        log.warning("NOT signing %s (--no-sign): this generated file carries no provenance and "
                    "cannot be told from a real recording by its metadata", path)
        return {"output": str(path), "signed": False}
    if options.cert or options.key:
        if not (options.cert and options.key):
            raise ProvenanceError("--cert and --key go together")
        identity = SigningIdentity.from_files(options.cert, options.key)
    else:
        paths = KeyPaths(Path(options.keys_dir) if options.keys_dir else default_keys_dir())
        if not paths.chain.exists() and not paths.key.exists():
            init_keys(paths.root)
            log.warning("made local signing keys in %s ('sfumato keys show' describes them)",
                        paths.root)
        identity = SigningIdentity.from_keys_dir(paths.root)
    result = sign_file(path, identity, path, generation, ingredients=list(ingredients),
                       thumbnail=options.thumbnail, tsa_url=options.tsa_url)
    return {**result, "signed": True}

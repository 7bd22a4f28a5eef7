"""Safe file writing shared by every module: atomic writes (temp file + rename) and hashing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from generator.errors import MissingWeightsError, VideoWriteError


def check_writable(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path if a file can be created there, else raise a clear error."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.exists() and p.is_dir():
        raise VideoWriteError(f"{p}: is a folder, expected a file name")
    if not parent.exists():
        raise VideoWriteError(f"cannot write {p}: folder {parent} does not exist")
    if not parent.is_dir():
        raise VideoWriteError(f"cannot write {p}: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise VideoWriteError(f"cannot write {p}: permission denied in {parent}")
    return p


def temp_path_beside(target: Path) -> Path:
    """Create and return an empty hidden temporary file in ``target``'s folder (same filesystem)."""
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp{target.suffix}"
        try:
            # os.open with 0o666 honours the umask (mkstemp would force 0600 on the final file).
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise VideoWriteError(f"cannot create a temporary file beside {target}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it."""
    target = check_writable(path)
    tmp_path = temp_path_beside(target)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)



def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Put ``src`` at ``dst`` as a hard link, else a copy, atomically; 'existing' if already there."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        if os.path.samefile(src, dst):
            return "existing"
        s, d = src.stat(), dst.stat()
        if s.st_size == d.st_size and s.st_mtime_ns == d.st_mtime_ns:  # copy2 keeps the mtime
            return "existing"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.{secrets.token_hex(4)}.tmp"
    try:
        try:
            os.link(src, tmp)
            how = "linked"
        except OSError:  # another file system, or links not allowed there
            shutil.copy2(src, tmp)
            how = "copied"
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return how


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def local_weights(given: str | os.PathLike | None, env: str, missing: str, expected: str,
                  file_name: str | None = None) -> Path:
    """Find a user-supplied weight file: the argument, else ``$env``; a folder means its ``file_name``.

    ``missing`` is the whole message when neither is set (what the file is, where to get it, how to
    pass it); ``expected`` describes the file in the not-found message. Never downloads anything.
    """
    chosen = given or os.environ.get(env)
    if not chosen:
        raise MissingWeightsError(missing)
    path = Path(chosen).expanduser()
    if path.is_dir() and file_name:
        path = path / file_name
    if not path.is_file():
        raise MissingWeightsError(f"weight file not found at {path}: expected {expected}")
    return path

"""Content-addressed storage of encoded audio on disk: ``root/ab/cd/<sha256>.<ext>``.

Writes go to a temporary file in the target folder, are flushed to disk, then renamed into
place, so a reader sees either nothing or the whole file, and two writers of the same bytes
simply both succeed. Names are checked strictly (64 lowercase hex digits, a short
alphanumeric suffix), so no caller can reach outside `root`. Calls block briefly; async
callers wrap them in ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Final

_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_SUFFIX: Final = re.compile(r"[a-z0-9]{1,8}")


class AudioIntegrityError(Exception):
    """A stored file no longer hashes to its name (disk corruption or tampering)."""


def _check_sha256(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


def _check_suffix(suffix: str) -> str:
    cleaned = suffix.removeprefix(".")
    if not _SUFFIX.fullmatch(cleaned):
        raise ValueError(f"not a plain file suffix: {suffix!r}")
    return cleaned


class AudioStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _folder(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4]

    def put(self, data: bytes, *, suffix: str) -> str:
        """Store `data` under its sha256 and return the digest; storing it again is a no-op."""
        ext = _check_suffix(suffix)
        sha256 = hashlib.sha256(data).hexdigest()
        folder = self._folder(sha256)
        target = folder / f"{sha256}.{ext}"
        if target.is_file() and target.stat().st_size == len(data):
            return sha256
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{sha256[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o600)  # the owner's only: served through the gateway, never directly
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_dir(folder)
        return sha256

    def path_for(self, sha256: str) -> Path | None:
        """The stored file for `sha256`, whatever its suffix, or None."""
        folder = self._folder(_check_sha256(sha256))
        if not folder.is_dir():
            return None
        for candidate in sorted(folder.glob(f"{sha256}.*")):
            if candidate.is_file() and _SUFFIX.fullmatch(candidate.suffix[1:]):
                return candidate
        return None

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256) is not None

    def read(self, sha256: str, *, verify: bool = True) -> bytes:
        """The stored bytes; FileNotFoundError if absent, AudioIntegrityError if altered."""
        path = self.path_for(sha256)
        if path is None:
            raise FileNotFoundError(f"no stored audio {sha256}")
        data = path.read_bytes()
        if verify and hashlib.sha256(data).hexdigest() != sha256:
            raise AudioIntegrityError(f"stored audio {sha256} does not match its digest")
        return data


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

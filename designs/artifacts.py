"""Content-addressed files for everything too big for a database row.

Unit code, trees, training curves and checkpoints are stored once, under the
SHA-256 of their bytes: ``<root>/<first 2 hex>/<sha256>``. The hash is the only
handle the rest of Genesys passes around (graph state carries hashes, never
megabytes), and equal content is stored once.

Every file is written to a temporary name in its final directory, fsynced and
renamed into place, so a reader (or a run resumed after a kill) sees either
the whole file or none. Files are never modified after that, so writers in
several processes need no lock: two writers of the same content rename the same
bytes onto the same name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

_HASH = re.compile(r"[0-9a-f]{64}")


class MissingArtifact(KeyError):
    """No artifact with this hash in the store."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def canonical_json(obj: Any) -> bytes:
    """The one byte form of a JSON value, so equal values hash equally."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


class ArtifactStore:
    """A directory of immutable files named by the SHA-256 of their content."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        """Where the artifact lives (whether or not it exists yet)."""
        if not _HASH.fullmatch(digest):
            raise ValueError(f"not an artifact hash (64 lowercase hex): {digest!r}")
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_bytes(self, data: bytes) -> str:
        """Store `data` and return its hash; storing known content is a no-op."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            _write_atomically(target, data)
        return digest

    def put_json(self, obj: Any) -> str:
        return self.put_bytes(canonical_json(obj))

    def get_bytes(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise MissingArtifact(f"no artifact {digest} under {self.root}") from None

    def get_json(self, digest: str) -> Any:
        return json.loads(self.get_bytes(digest))


def _write_atomically(target: Path, data: bytes) -> None:
    """Write via a temp file in the same directory, fsync, rename into place.

    The rename is atomic within one directory; fsyncing the file before it and
    the directory after it makes the new name survive a crash of the machine,
    not only of the process.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600; artifacts are shared
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Content-addressed object store: every file version is kept once, named by the sha256 of its bytes.

Objects are immutable and only ever appear under their final name after being fully written and fsynced, so a
commit that references an object can always read it back intact; and because disks and people still change
files, every copy handed to a step is re-hashed: a corrupt object is moved to `corrupt/` and refused, never fed
on. Identical files (the same CSV put twice, a vocab copied through train and build) are stored once.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from localpach.errors import CorruptObject
from localpach.fsutil import CHUNK, fsync_dir
from localpach.records import FSCK_HINT, is_digest

MISSING_HINT = (
    "put the file again if it came from put-file, or `localpach run` to make a pipeline's latest output again; "
    + FSCK_HINT
)


@dataclass(frozen=True)
class StoredObject:
    """What a commit needs to know about one file version."""

    hash: str
    size: int


class ObjectStore:
    """Blobs under `root/<2 hex>/<62 hex>`, written via `root/tmp/` and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def path_of(self, digest: str) -> Path:
        """The one way to an object's file: only a sha256 hex digest becomes a path."""
        if not is_digest(digest):
            raise CorruptObject(f"invalid object hash {digest!r}: expected 64 lowercase hex characters")
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path_of(digest).is_file()

    def put_file(self, source: Path) -> StoredObject:
        """Copy `source` into the store while hashing it; a crash leaves only a temp file."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / secrets.token_hex(16)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(source, "rb") as reader, open(tmp, "wb") as writer:
                while chunk := reader.read(CHUNK):
                    digest.update(chunk)
                    writer.write(chunk)
                    size += len(chunk)
                writer.flush()
                os.fsync(writer.fileno())
            final = self.path_of(digest.hexdigest())
            if final.is_file():
                tmp.unlink()
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
                fsync_dir(final.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StoredObject(hash=digest.hexdigest(), size=size)

    def put_bytes(self, data: bytes) -> StoredObject:
        digest = hashlib.sha256(data).hexdigest()
        final = self.path_of(digest)
        if not final.is_file():
            self.tmp.mkdir(parents=True, exist_ok=True)
            tmp = self.tmp / secrets.token_hex(16)
            with open(tmp, "wb") as writer:
                writer.write(data)
                writer.flush()
                os.fsync(writer.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
            fsync_dir(final.parent)
        return StoredObject(hash=digest, size=len(data))

    def read_bytes(self, digest: str) -> bytes:
        """An object's bytes, verified like `copy_to` (a missing or altered object is named, never returned)."""
        path = self.path_of(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CorruptObject(f"{path}: stored object {digest[:12]} is missing; {MISSING_HINT}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            moved = self.quarantine(digest)
            raise CorruptObject(
                f"{path}: stored object {digest[:12]} is corrupt: its bytes now hash to {actual[:12]}; moved it to "
                f"{moved}; {MISSING_HINT}"
            )
        return data

    def copy_to(self, digest: str, target: Path) -> None:
        """Materialise one object as a private, writable copy (a step can never alter the store), verified.

        Raises CorruptObject (and quarantines the object, so putting the original file again restores it) when
        the stored bytes no longer hash to `digest`.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        source = self.path_of(digest)
        actual = hashlib.sha256()
        try:
            with open(source, "rb") as reader, open(target, "wb") as writer:
                while chunk := reader.read(CHUNK):
                    actual.update(chunk)
                    writer.write(chunk)
        except FileNotFoundError:
            target.unlink(missing_ok=True)
            raise CorruptObject(f"stored object {digest[:12]} is missing ({source})") from None
        if actual.hexdigest() != digest:
            target.unlink(missing_ok=True)
            moved = self.quarantine(digest)
            raise CorruptObject(
                f"stored object {digest[:12]} is corrupt: its bytes now hash to {actual.hexdigest()[:12]}; "
                f"moved it to {moved}"
            )

    def quarantine(self, digest: str) -> Path:
        """Move a corrupt object out of the way (kept for inspection); a later put of the same bytes stores it anew."""
        corrupt = self.root / "corrupt"
        corrupt.mkdir(parents=True, exist_ok=True)
        moved = corrupt / f"{digest}-{secrets.token_hex(4)}"
        os.replace(self.path_of(digest), moved)
        return moved

    def clean_tmp(self) -> None:
        """Drop half-copied objects left by a killed writer (only called under the state lock)."""
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)

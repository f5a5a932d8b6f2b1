"""Content-addressed object store: every file version is kept once, named by the sha256 of its bytes.

Objects are immutable and only ever appear under their final name after being fully written and fsynced, so a
commit that references an object can always read it back intact. Identical files (the same CSV put twice, a vocab
copied through train and build) are stored once.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from localpach.fsutil import CHUNK, fsync_dir


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
        return self.path_of(digest).read_bytes()

    def copy_to(self, digest: str, target: Path) -> None:
        """Materialise one object as a private, writable copy (a step can never alter the store)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path_of(digest), target)

    def clean_tmp(self) -> None:
        """Drop half-copied objects left by a killed writer (only called under the state lock)."""
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)

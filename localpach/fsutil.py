"""Crash-safe file primitives: every durable write goes to a temp file, is fsynced, then renamed into place.

A reader therefore sees either the old or the new version of a record, never a torn one, and a process killed
mid-write leaves only a stray temp file that the next writer removes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    """Persist a rename or a new entry in `path` (POSIX needs the directory itself synced)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(target: Path) -> Path:
    """A sibling temp path: same filesystem, so the final rename is atomic."""
    return target.with_name(f".{target.name}.tmp-{secrets.token_hex(6)}")


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write `data` to `target` so that `target` is never seen half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)


def atomic_write_json(target: Path, value: Any) -> None:
    """Atomically write `value` as indented, key-sorted JSON (stable diffs, easy to read by hand)."""
    atomic_write_bytes(target, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """Hash of the canonical JSON form: equal data gives an equal hash regardless of key order."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def make_tree_writable(root: Path) -> None:
    """Undo the read-only modes given to materialised inputs so the tree can be deleted."""
    if not root.exists() and not root.is_symlink():
        return
    if root.is_symlink() or not root.is_dir():
        return
    for dirpath, dirnames, _ in os.walk(root):
        os.chmod(dirpath, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        for name in dirnames:
            child = os.path.join(dirpath, name)
            if not os.path.islink(child):
                os.chmod(child, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def remove_tree(root: Path) -> None:
    """Delete a scratch tree even when a step (or we) made parts of it read-only."""
    if not root.exists() and not root.is_symlink():
        return
    if root.is_symlink() or root.is_file():
        root.unlink()
        return
    make_tree_writable(root)
    shutil.rmtree(root)


def make_tree_read_only(root: Path) -> None:
    """Files 0444, directories 0555: a step that writes to its input fails as it would under Pachyderm."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o444)
        os.chmod(dirpath, 0o555)

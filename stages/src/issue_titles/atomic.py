"""Write a step's output folder all at once: build it in a temp folder beside it, rename at the end.

A failing step therefore leaves either the previous output or nothing, never a half-written folder that a
later step (or Pachyderm) would take for a result.
"""

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output_dir(output: Path) -> Iterator[Path]:
    """Yield a fresh temp folder; on success it becomes `output`, on any exception it is deleted.

    `output` may already exist: an empty folder (Pachyderm's /pfs/out, a runner's fresh job folder) is filled,
    a non-empty one is replaced as a whole.
    """
    output = Path(output).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    except OSError:
        if not (output.is_dir() and not any(output.iterdir())):
            raise
        # The parent is read-only (e.g. /pfs in a Pachyderm worker): stage inside the empty output instead.
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=output))
    try:
        yield staging
        _make_readable(staging)
        _publish(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish(staging: Path, output: Path) -> None:
    if staging.parent == output:
        _move_children(staging, output)
        return
    if not output.exists():
        os.rename(staging, output)
        return
    if output.is_dir() and not any(output.iterdir()):
        try:
            os.rename(staging, output)  # replaces an empty directory atomically on POSIX
            return
        except OSError as error:
            if error.errno not in (errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOTEMPTY):
                raise
        # A mount point (Pachyderm's /pfs/out) cannot be replaced: move the finished files into it.
        _move_children(staging, output)
        return
    # A previous result: swap it out, then delete it.
    trash = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
    os.rename(output, trash / "old")
    os.rename(staging, output)
    shutil.rmtree(trash, ignore_errors=True)


def _make_readable(staging: Path) -> None:
    """mkdtemp creates 0700; the published folder gets the usual permissions (0777 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)


def _move_children(staging: Path, output: Path) -> None:
    for child in sorted(staging.iterdir()):
        shutil.move(str(child), str(output / child.name))  # rename, or copy across a mount
    staging.rmdir()


@contextlib.contextmanager
def atomic_output_file(output: Path) -> Iterator[Path]:
    """Yield a temp file path beside `output`; it replaces `output` only when the block succeeds."""
    output = Path(output).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{output.name}.tmp-", dir=output.parent)
    os.close(handle)
    staging = Path(name)
    try:
        yield staging
        os.replace(staging, output)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise

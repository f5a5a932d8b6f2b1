"""Write a step's output folder all at once: build it in a temp folder beside it, rename at the end.

A failing step therefore leaves either the previous output or nothing, never a half-written folder that a
later step (or Pachyderm) would take for a result.

What may be replaced (`check_output_dir`, run before the step does any work): a missing folder, an empty one,
or a folder holding MARKER naming the same step, i.e. that step's previous output. Anything else is refused
with one line and nothing changes: a file, a folder of other files, another step's output, a serving bundle,
an input (or a folder containing one, or inside one), a symlink to no folder. A symlink to a folder is followed
(Pachyderm's /pfs/out is one) and the link itself is kept.

MARKER is a small JSON file every step writes into its output (`{"step": "split", ...}`), with fixed content so
that identical runs give identical outputs. Steps read their inputs by name, so downstream steps never see it;
in a bundle it is one more file listed in provenance.json's checksums, like every other bundle file.
"""

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from issue_titles.contract import PROVENANCE
from issue_titles.errors import StageError

MARKER = ".stages-output.json"
_UNCHANGED = " (nothing was changed)"
# Failures of the output's file system a user can fix (full disk, read-only mount, permissions).
_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.ENAMETOOLONG}


def marker_content(step: str) -> dict:
    return {"step": step, "note": f"written by `stages {step}`; a later `stages {step}` may replace this folder"}


def check_output_dir(output: Path, step: str, inputs: Iterable[Path] = ()) -> Path:
    """Refuse an --output whose replacement could lose data (StageError naming it); return the real folder path.

    `inputs` are the step's input folders or files: the output may not be one, contain one or lie inside one.
    """
    output = Path(output)
    target = _follow_link(output)
    if target.exists() and not target.is_dir():
        raise StageError("is a file, not a folder; --output must be a folder" + _UNCHANGED, path=output)
    _refuse_overlap(output, target, inputs, kind="folder")
    if target.is_dir() and any(target.iterdir()):
        previous = _marker_step(target)
        if previous == step:
            return target
        if (target / PROVENANCE).is_file() and previous in (None, "build") and step != "build":
            raise StageError(
                f"is a serving bundle (it has provenance.json), not an output of `stages {step}`; choose another "
                "folder" + _UNCHANGED,
                path=output,
            )
        if previous is None:
            raise StageError(
                f"is not empty and was not written by `stages {step}` (no {MARKER}); remove it or choose a new "
                "folder" + _UNCHANGED,
                path=output,
            )
        raise StageError(
            f"holds the output of `stages {previous}`, not of `stages {step}`; choose another folder" + _UNCHANGED,
            path=output,
        )
    return target


def check_output_file(output: Path, step: str, inputs: Iterable[Path] = (), header_ends_with: str = "") -> Path:
    """Like `check_output_dir` for a step writing one file: an existing file is replaced only if its first line
    ends with `header_ends_with` (the step's own header)."""
    output = Path(output)
    target = _follow_link(output, want="a file")
    if target.is_dir():
        raise StageError("is a folder; --output must be a file" + _UNCHANGED, path=output)
    _refuse_overlap(output, target, inputs, kind="file")
    if target.exists():
        try:
            with open(target, encoding="utf-8", errors="replace") as handle:
                first = handle.readline().strip()
        except OSError as error:
            raise StageError(f"cannot read the existing output: {error.strerror}" + _UNCHANGED, path=output) from None
        if not header_ends_with or not first.endswith(header_ends_with):
            raise StageError(
                f"exists and is not an output of `stages {step}` (its header does not end with {header_ends_with}); "
                "remove it or choose a new file" + _UNCHANGED,
                path=output,
            )
    return target


def _follow_link(output: Path, want: str = "a folder") -> Path:
    if not output.is_symlink():
        return output
    target = output.resolve()
    ok = target.is_dir() if want == "a folder" else (target.is_file() or not target.exists())
    if not ok:
        raise StageError(
            f"is a symlink to {target}, which is not {want}; --output must be {want} or a link to one" + _UNCHANGED,
            path=output,
        )
    return target


def _refuse_overlap(output: Path, target: Path, inputs: Iterable[Path], kind: str) -> None:
    resolved = target.resolve()
    for source in inputs:
        source_resolved = Path(source).resolve()
        if resolved == source_resolved:
            raise StageError(
                f"is also the input {source}; write the output to another {kind}" + _UNCHANGED, path=output
            )
        if resolved in source_resolved.parents:
            raise StageError(
                f"contains the input {source}; replacing it would delete the input" + _UNCHANGED, path=output
            )
        if source_resolved in resolved.parents:
            raise StageError(
                f"lies inside the input {source}; the next run would read this output back as input" + _UNCHANGED,
                path=output,
            )


def _marker_step(folder: Path) -> str | None:
    try:
        step = json.loads((folder / MARKER).read_text(encoding="utf-8")).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    return step if isinstance(step, str) else None


def _write_error(output: Path, error: OSError, where: Path | None = None) -> StageError:
    place = f" ({where})" if where is not None else ""
    return StageError(f"cannot write the output folder: {error.strerror}{place}" + _UNCHANGED, path=output)


@contextlib.contextmanager
def atomic_output_dir(output: Path, *, step: str, inputs: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield a fresh temp folder holding MARKER; on success it becomes `output`, on any exception it is deleted.

    `output` is checked first (`check_output_dir`): an empty folder (Pachyderm's /pfs/out, a runner's fresh job
    folder) is filled, the same step's previous output is replaced as a whole, anything else is refused.
    """
    shown = Path(output)
    output = check_output_dir(shown, step, inputs).absolute()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
        except OSError:
            if not (output.is_dir() and not any(output.iterdir())):
                raise
            # The parent is read-only (e.g. /pfs in a Pachyderm worker): stage inside the empty output instead.
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=output))
        (staging / MARKER).write_text(json.dumps(marker_content(step), indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        if error.errno in _WRITE_ERRNOS:
            raise _write_error(shown, error, output.parent) from None
        raise
    try:
        yield staging
        _make_readable(staging)
        _publish(staging, output)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if error.errno in _WRITE_ERRNOS:
            raise _write_error(shown, error) from None
        raise
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

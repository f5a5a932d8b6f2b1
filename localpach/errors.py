"""Errors that reach the user as a one-line message and an exit code, never as a traceback."""

from __future__ import annotations


class LocalPachError(Exception):
    """A problem the user can act on; the CLI prints `message` and exits with `exit_code`."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(LocalPachError):
    """A repo, branch, commit, job or file that does not exist."""


class InputRefused(LocalPachError):
    """Input data that was refused before anything was written (the repo is unchanged)."""

    exit_code = 2


class UsageError(LocalPachError):
    """A command-line value that cannot work (a bad --state, an -o path that cannot be written): exit 2, before
    any work starts."""

    exit_code = 2


class SpecError(LocalPachError):
    """A pipeline spec the local runner cannot run (unsupported input type, missing field, cycle)."""


class StateLocked(LocalPachError):
    """Another localpach process holds the state lock and the caller asked not to wait."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class CorruptObject(LocalPachError):
    """A stored file whose bytes no longer match its content hash (disk fault, someone edited the store)."""


class CorruptState(LocalPachError):
    """A state record (commit, branch, repo, job) that is missing or unreadable: named with how to repair it.

    Only what depends on that record stops; `localpach fsck` lists every such problem and fixes the safe ones.
    """

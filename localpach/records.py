"""Names and state records: the one place that decides what may become part of a path, and how a record is read.

Every path under the state directory that carries a name (a repo, a branch, a commit, a job, an object) is built by a
helper that calls a `check_*` function below first (`PFS._repo_dir`, `PFS._branch_path`, `PFS._commit_path`,
`ObjectStore.path_of`, `JobStore.path_of`), so no unchecked name ever reaches the filesystem.

The rules are Pachyderm's (pachyderm/pachyderm v2.12.0-rc.3):
- repo and branch names: `^[a-zA-Z0-9_-]+$` (src/internal/ancestry/ancestry.go `ValidateName`, which the PFS server
  calls for every branch it creates or commits to: src/server/pfs/server/server_branch.go, server_commit.go);
- a 32-hex UUIDv4 after `@` is a commit ID, never a branch (src/internal/cmdutil/cobra.go `parseFile` with
  src/internal/uuid/uuid.go `IsUUIDWithoutDashes`), so a branch may not look like one.
Local limits on top: repo names at most 63 characters, branch names at most 200 (each is a file name here).

A record that is missing or unreadable raises `CorruptState` naming the file, what is wrong and how to repair it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from localpach.errors import CorruptState, InputRefused
from localpach.fsutil import read_json

T = TypeVar("T")

NAME_RULE = "only letters, digits, '_' and '-' are allowed, as in Pachyderm"
MAX_REPO_NAME = 63
MAX_BRANCH_NAME = 200
FSCK_HINT = "run `localpach fsck` to list every problem and its repair"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_ID = re.compile(r"^[0-9a-f]{32}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


# ------------------------------------------------------------------------------------------------ names


def is_name(value: object, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and _NAME.match(value) is not None


def is_commit_id(value: object) -> bool:
    return isinstance(value, str) and _ID.match(value) is not None


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.match(value) is not None


def is_branch_name(value: object) -> bool:
    return is_name(value, MAX_BRANCH_NAME) and not is_commit_id(value)


def check_repo_name(name: object) -> str:
    if not is_name(name, MAX_REPO_NAME):
        raise InputRefused(f"invalid repo name {name!r}: {NAME_RULE} (at most {MAX_REPO_NAME} characters)")
    return name  # type: ignore[return-value]


def check_branch_name(name: object) -> str:
    if is_commit_id(name):
        raise InputRefused(
            f"invalid branch name {name!r}: 32 hex characters is a commit ID, not a branch (pachctl reads it as one); "
            "choose another branch name"
        )
    if not is_name(name, MAX_BRANCH_NAME):
        raise InputRefused(
            f"invalid branch name {name!r}: {NAME_RULE} (no '/', '.', '@' or spaces; at most {MAX_BRANCH_NAME} "
            "characters); nothing was written"
        )
    return name  # type: ignore[return-value]


def check_commit_id(value: object) -> str:
    if not is_commit_id(value):
        raise InputRefused(f"invalid commit ID {value!r}: a commit ID is 32 lowercase hex characters")
    return value  # type: ignore[return-value]


def is_clean_repo_path(path: object) -> bool:
    """A file path inside a repo: relative, no empty, '.' or '..' part (it is joined to a folder when read)."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


# ------------------------------------------------------------------------------------------------ records


class BadField(ValueError):
    """A record field with the wrong type or value (the message names the field)."""


Repair = str | Callable[[], str]  # a callable when working out the repair costs something (only on error)


def _repair(repair: Repair) -> str:
    text = repair() if callable(repair) else repair
    return text or f"restore it from a backup, or {FSCK_HINT}"


def read_record(path: Path, what: str, repair: Repair = "") -> dict[str, Any]:
    """The JSON object in `path`, or CorruptState: '<path>: the <what> is missing/unreadable (...); <repair>'."""
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise CorruptState(f"{path}: the {what} is missing; {_repair(repair)}") from None
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CorruptState(f"{path}: the {what} is unreadable ({_why(error)}); {_repair(repair)}") from None
    if not isinstance(data, dict):
        raise CorruptState(f"{path}: the {what} is not a JSON object; {_repair(repair)}")
    return data


def parse_record(path: Path, what: str, parse: Callable[[], T], repair: Repair = "") -> T:
    """Run `parse` on a record already read; a missing or wrong field becomes CorruptState naming it."""
    try:
        return parse()
    except KeyError as error:
        problem = f"field {error.args[0]!r} is missing"
    except (BadField, InputRefused) as error:
        problem = getattr(error, "message", None) or str(error)
    except (TypeError, ValueError, AttributeError) as error:
        problem = str(error)
    raise CorruptState(f"{path}: the {what} is invalid ({problem}); {_repair(repair)}")


def typed(data: dict[str, Any], name: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
    """`data[name]` if it has type `kind` (bool is never a number); None allowed when `optional`."""
    if name not in data:
        if optional:
            return None
        raise BadField(f"field {name!r} is missing")
    value = data[name]
    if value is None and optional:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise BadField(f"field {name!r} is {json.dumps(value)[:60]}, not a {' or '.join(k.__name__ for k in kinds)}")
    return value


def checked(
    data: dict[str, Any], name: str, test: Callable[[object], bool], expected: str, optional: bool = False
) -> Any:
    """`data[name]` if `test` accepts it (e.g. a commit ID), else BadField naming the field and what it must be."""
    if optional and data.get(name) is None:
        return None
    if name not in data:
        raise BadField(f"field {name!r} is missing")
    value = data[name]
    if not test(value):
        raise BadField(f"field {name!r} is {json.dumps(value)[:60]}, not {expected}")
    return value


def _why(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON: {error.msg.lower()}, line {error.lineno} column {error.colno}"
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)

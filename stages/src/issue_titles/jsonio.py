"""Small helpers for the plain-data files every stage writes and reads (JSON, .npy without pickles)."""

import json
from pathlib import Path
from typing import Any

import numpy as np

from issue_titles.errors import StageError


def write_json(path: Path, data: Any) -> None:
    """Strict JSON only: NaN or Infinity (a diverged training's loss) is refused instead of written."""
    try:
        text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False, allow_nan=False)
    except ValueError:
        raise StageError(
            "refusing to write NaN or Infinity (not JSON); a value it would hold is not finite", path=path
        ) from None
    Path(path).write_text(text + "\n", encoding="utf-8")


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise StageError("file not found", path=path)
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise StageError(f"not valid JSON: {error.msg} (column {error.colno})", path=path, line=error.lineno) from None
    except UnicodeDecodeError:
        raise StageError("not UTF-8 text", path=path) from None
    except ValueError as error:  # _refuse_constant
        raise StageError(f"holds {error}, which is not a JSON number (a non-finite value)", path=path) from None


def read_vocabulary(path: Path) -> list[str]:
    data = read_json(path)
    if not isinstance(data, list) or not all(isinstance(token, str) for token in data) or len(data) < 3:
        raise StageError("a vocabulary must be a JSON list of at least 3 strings", path=path)
    return data


def load_array(path: Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise StageError("file not found", path=path)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        raise StageError(f"not a plain numeric .npy array: {error}", path=path) from None

"""Small helpers for the plain-data files every stage writes and reads (JSON, .npy without pickles)."""

import json
from pathlib import Path
from typing import Any

import numpy as np

from issue_titles.errors import StageError


def write_json(path: Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise StageError("file not found", path=path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise StageError(f"not valid JSON: {error.msg} (column {error.colno})", path=path, line=error.lineno) from None
    except UnicodeDecodeError:
        raise StageError("not UTF-8 text", path=path) from None


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

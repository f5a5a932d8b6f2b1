"""Errors a stage reports to its user as one line (the CLI prints the message and exits non-zero)."""

from pathlib import Path


class StageError(Exception):
    """Bad input or a refused step: the message says what is wrong and where (file, line)."""

    exit_code = 2

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}: " if line is None else f"{path}: line {line}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class QualityGateError(StageError):
    """The model is worse than the quality gate allows; `build` refuses to package it."""

    exit_code = 3


class TamperedBundleError(StageError):
    """A bundle file does not match the checksum recorded in provenance.json."""

    exit_code = 4

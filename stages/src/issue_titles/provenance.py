"""Checksums and code identity: what `build` records and what `TitlePredictor.load` verifies."""

import hashlib
from pathlib import Path

import issue_titles
from issue_titles.errors import TamperedBundleError
from issue_titles.jsonio import read_json

PROVENANCE = "provenance.json"
# Files a predictor reads: when provenance.json exists, each of them must be listed and match.
REQUIRED_FOR_LOADING = ("model.weights.h5", "model.json", "body_vocab.json", "title_vocab.json", "preprocess.json")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(folder: Path, exclude: tuple[str, ...] = (PROVENANCE,)) -> dict[str, str]:
    """sha256 of every file below `folder` (relative POSIX paths), except `exclude`."""
    folder = Path(folder)
    return {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() not in exclude
    }


def code_version() -> dict:
    """Package version + a content hash of the package's Python sources (no git needed inside an image)."""
    root = Path(issue_titles.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return {"package": "issue-titles", "version": issue_titles.__version__, "source_sha256": digest.hexdigest()}


def verify_bundle(folder: Path) -> None:
    """Raise TamperedBundleError unless every file recorded in provenance.json is present and unchanged."""
    folder = Path(folder)
    record = read_json(folder / PROVENANCE)
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict):
        raise TamperedBundleError("has no 'files' checksum table", path=folder / PROVENANCE)
    for name in REQUIRED_FOR_LOADING:
        if name not in files:
            raise TamperedBundleError(f"does not list {name}, so it cannot be verified", path=folder / PROVENANCE)
    for name, expected in files.items():
        if not _inside_bundle(name):
            # A forged table could otherwise make the loader read (hash) any file on the machine.
            raise TamperedBundleError(f"lists {name!r}, which is not a file inside the bundle", path=folder / PROVENANCE)
        path = folder / name
        if not isinstance(expected, str):
            raise TamperedBundleError(f"{PROVENANCE} records no sha256 string for this file", path=path)
        if not path.is_file():
            raise TamperedBundleError(f"bundle file listed in {PROVENANCE} is missing", path=path)
        actual = sha256_file(path)
        if actual != expected:
            raise TamperedBundleError(
                f"checksum mismatch: {PROVENANCE} records sha256 {expected[:12]}…, the file has {actual[:12]}…; "
                "the bundle was changed after `stages build`",
                path=path,
            )


def _inside_bundle(name: object) -> bool:
    """A relative POSIX path below the bundle folder: no absolute path, no `..`, no empty or odd parts."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or "\0" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))

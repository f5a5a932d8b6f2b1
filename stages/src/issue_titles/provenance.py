"""Checksums and code identity: what `build` records and what `TitlePredictor.load` verifies.

The checksums detect accidents (a truncated copy, a stray edit, a file left over or added by hand), not forgery:
anyone who can change a bundle file can also rewrite provenance.json. They are not signatures; sign the serving
image (or the bundle) if you need to know who built it.
"""

import hashlib
import os
import stat
from pathlib import Path

import issue_titles
from issue_titles.contract import MODEL_FILES, PROVENANCE
from issue_titles.errors import StageError, TamperedBundleError
from issue_titles.jsonio import read_json

# Files a predictor reads: when provenance.json exists, each of them must be listed and match.
REQUIRED_FOR_LOADING = MODEL_FILES
# The layout of a bundle and of its provenance.json. Bundles built before the field was recorded are format 1.
BUNDLE_FORMAT = 1


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
    """Raise unless the bundle is exactly what `stages build` wrote: a known format (StageError), only regular files,
    every one listed in provenance.json, present and unchanged (TamperedBundleError)."""
    folder = Path(folder)
    record = read_json(folder / PROVENANCE)
    if not isinstance(record, dict):
        raise TamperedBundleError("is not a JSON object", path=folder / PROVENANCE)
    version = record.get("bundle_format", 1)
    if version != BUNDLE_FORMAT or isinstance(version, bool):
        raise StageError(
            f"bundle format {version!r} is not one this code reads ({BUNDLE_FORMAT}); rebuild the bundle with this "
            "version's `stages build`, or serve it with the version that built it",
            path=folder / PROVENANCE,
        )
    files = record.get("files")
    if not isinstance(files, dict):
        raise TamperedBundleError("has no 'files' checksum table", path=folder / PROVENANCE)
    for name in REQUIRED_FOR_LOADING:
        if name not in files:
            raise TamperedBundleError(f"does not list {name}, so it cannot be verified", path=folder / PROVENANCE)
    for name in files:
        if not _inside_bundle(name):
            # A forged table could otherwise make the loader read (hash) any file on the machine.
            raise TamperedBundleError(
                f"lists {name!r}, which is not a file inside the bundle", path=folder / PROVENANCE
            )
    _refuse_unlisted(folder, set(files))
    for name, expected in files.items():
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


def _refuse_unlisted(folder: Path, listed: set[str]) -> None:
    """Every entry below the bundle folder (which may itself be a link) is a listed regular file or a folder."""
    root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            shown = folder / full.relative_to(root)
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise TamperedBundleError(
                    f"is a symlink (to {os.readlink(full)}); a bundle holds only regular files, copy the file in "
                    "instead",
                    path=shown,
                )
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise TamperedBundleError("is not a regular file (a fifo, socket or device)", path=shown)
            relative = full.relative_to(root).as_posix()
            if relative != PROVENANCE and relative not in listed:
                raise TamperedBundleError(
                    f"is not listed in {PROVENANCE}; a bundle holds only the files `stages build` wrote (remove it, "
                    "or rebuild the bundle)",
                    path=shown,
                )


def _inside_bundle(name: object) -> bool:
    """A relative POSIX path below the bundle folder: no absolute path, no `..`, no empty or odd parts."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or "\0" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))

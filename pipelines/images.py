"""Image references: the one grammar the Pulumi program (infra/), the pipeline settings and the policy pack read.

`[registry/]repository[:tag][@digest]`, as Docker reads it: the first path component is a registry host when it has
a `.` or a `:` or is `localhost` (else the image lives on Docker Hub), and a `:` after the last `/` starts the tag (so
a registry port is never a tag). The name and tag grammars are the distribution spec's (distribution-spec v1.1.1
spec.md, "Pulling manifests"); the digests are the registered algorithms of image-spec v1.1.1 descriptor.md.

The stage image cannot import this package: `stages export` parses with `issue_titles.registry.parse_reference`,
and tests/pipelines/test_images.py asserts the two grammars accept, refuse and split the same references. No I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"  # where an image without a registry host lives
_COMPONENT = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(/{_COMPONENT})*$")
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
_HOST = re.compile(r"^([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(:[0-9]{1,5})?$")


class ImageReferenceError(ValueError):
    """Not an image reference; the message says which part is wrong (the caller names the key or input)."""


@dataclass(frozen=True)
class ImageReference:
    """A reference split into its parts; `repository` is as written, registry host included (`host:5000/team/app`)."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def registry(self) -> str:
        """The registry host, or Docker Hub for an image written without one."""
        head, _, rest = self.repository.partition("/")
        return head if rest and _is_host(head) else DOCKER_HUB

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _is_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def parse(text: object) -> ImageReference:
    """Split a reference; ImageReferenceError says what is wrong with it."""
    if not isinstance(text, str) or not text or text != text.strip():
        raise ImageReferenceError(f"{text!r} is not an image reference")
    rest, digest = text.split("@", 1) if "@" in text else (text, None)
    if digest is not None and not _DIGEST.match(digest):
        raise ImageReferenceError(f"{digest!r} is not a sha256/sha512 digest")
    head, _, path = rest.partition("/")
    if path and _is_host(head):
        if not _HOST.match(head):
            raise ImageReferenceError(f"{head!r} is not a registry host")
    else:
        head, path = "", rest
    tag = None
    if ":" in path:
        path, tag = path.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ImageReferenceError(f"{tag!r} is not a valid tag")
    if not _NAME.match(path):
        raise ImageReferenceError(f"{path!r} is not a valid repository name (lower-case)")
    return ImageReference(f"{head}/{path}" if head else path, tag, digest)


def reference_problem(text: object) -> str | None:
    """Why `text` is not an image reference, or None."""
    try:
        parse(text)
    except ImageReferenceError as error:
        return str(error)
    return None


def repository_problem(text: object) -> str | None:
    """Why `text` is not a repository to tag (a reference without tag or digest), or None."""
    try:
        reference = parse(text)
    except ImageReferenceError as error:
        return str(error)
    if reference.tag or reference.digest:
        return f"it carries a {'tag' if reference.tag else 'digest'}"
    return None


def tag_problem(tag: object) -> str | None:
    """Why `tag` is not a Docker tag, or None."""
    return None if isinstance(tag, str) and _TAG.match(tag) else f"{tag!r} is not a valid tag"


def tagged(repository: str, tag: str) -> str:
    """`repository:tag`, both checked: a reference the registry and the policy pack read the same way."""
    problem = repository_problem(repository) or tag_problem(tag)
    if problem is not None:
        raise ImageReferenceError(f"cannot tag {repository!r} with {tag!r}: {problem}")
    return f"{repository}:{tag}"

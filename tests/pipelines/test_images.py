"""One image-reference grammar on each side of the package boundary, and the two agree.

`stages export` parses with `issue_titles.registry.parse_reference`; the Pulumi program, the pipeline settings and the
policy pack with `pipelines.images.parse`. Neither package may import the other, so this table holds them together:
what one accepts the other accepts, split the same way, and what one refuses the other refuses."""

from __future__ import annotations

import pytest

from issue_titles.errors import StageError
from issue_titles.registry import parse_reference
from pipelines import images

DIGEST = "sha256:" + "a" * 64
VALID = [
    "app",
    "python:3.11-slim",
    "team/app",
    "docker.io/team/app",
    "index.docker.io/library/python:3.11",
    "localhost/app",
    "localhost:5000/team/app",
    "localhost:5000/team/app:v1",
    "registry.example.com/issue-titles/serving:0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "Registry.Example.com:443/a/b",
    "192.168.49.2:5000/stages:cpu-0123abcd",
    "[::1]:5000/app:1",
    "europe-docker.pkg.dev/p/r/stages@" + DIGEST,
    "172.18.0.2:5000/stages:abc@" + DIGEST,
    "r.example.com/s@sha512:" + "b" * 128,
    "a/b__c/d--e.f_g:_tag.1-x",
    "app:" + "t" * 128,
]
INVALID = [
    "",
    " app",
    "app ",
    "Not Valid",
    "App",
    "registry.example.com/Team/app",
    "app:",
    "app:-tag",
    "app:" + "t" * 129,
    "app:tag/with/slash",
    "app@sha256:short",
    "app@md5:" + "a" * 32,
    "app/",
    "/app",
    "a//b",
    "a/-b",
    "a/b_",
    "a/b___c",
    "bad_host.example.com/app",
    "registry.example.com:port/app",
]


def _stages(text: str) -> tuple[str, str, str | None, str | None]:
    """(registry, repository on that registry, tag, digest) as `stages export` pushes it."""
    reference = parse_reference(text)
    return reference.registry, reference.repository, reference.tag, reference.digest


def _pipelines(text: str) -> tuple[str, str, str | None, str | None]:
    """The same four parts from pipelines.images, with Docker Hub's aliases and `library/` made explicit."""
    reference = images.parse(text)
    registry = reference.registry
    path = reference.repository.removeprefix(f"{registry}/") if reference.repository != registry else ""
    if registry.lower() in {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}:
        registry = images.DOCKER_HUB
        path = path if "/" in path else f"library/{path}"
    return registry, path, reference.tag, reference.digest


@pytest.mark.parametrize("text", VALID)
def test_both_grammars_accept_and_split_a_reference_alike(text: str) -> None:
    assert _pipelines(text) == _stages(text)
    assert str(images.parse(text)) == text  # the program's references are written back unchanged


@pytest.mark.parametrize("text", INVALID)
def test_both_grammars_refuse_a_reference(text: str) -> None:
    with pytest.raises(StageError):
        parse_reference(text)
    with pytest.raises(images.ImageReferenceError):
        images.parse(text)


@pytest.mark.parametrize("text", VALID + INVALID)
def test_a_repository_to_tag_is_a_reference_without_tag_or_digest(text: str) -> None:
    """What infra/config.py accepts as serving:imageRepo is what `stages export --image` takes without a tag."""
    try:
        reference = parse_reference(text)
    except StageError:
        export_takes_it = False
    else:
        export_takes_it = reference.tag is None and reference.digest is None
    assert (images.repository_problem(text) is None) == export_takes_it


def test_a_tag_is_checked_with_its_repository() -> None:
    assert images.tagged("registry.example.com/serving", "0f1e2d3c") == "registry.example.com/serving:0f1e2d3c"
    with pytest.raises(images.ImageReferenceError, match="'-bad/tag' is not a valid tag"):
        images.tagged("registry.example.com/serving", "-bad/tag")
    with pytest.raises(images.ImageReferenceError, match="it carries a tag"):
        images.tagged("registry.example.com/serving:v1", "0f1e2d3c")

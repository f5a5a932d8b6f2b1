"""The stage image, built from `stages/` and pushed with pulumi-docker, tagged by the content it is built from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from infra.platform import RegistryCredentials
from pipelines.images import tagged

STAGES_DIR = Path(__file__).resolve().parents[1] / "stages"
# What the Dockerfile copies in; anything else in the folder (benchmarks, caches) does not change the image.
IMAGE_INPUTS = (
    "Dockerfile",
    "requirements.lock",
    "requirements-gpu.lock",
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "src",
)
_IGNORED_PARTS = {"__pycache__", ".pytest_cache"}


def content_tag(folder: Path, variant: str) -> str:
    """A tag that changes exactly when the files the image is built from change, so an unchanged package keeps
    its tag and is neither rebuilt nor re-rolled into the pipelines."""
    digest = hashlib.sha256(variant.encode())
    for name in IMAGE_INPUTS:
        root = folder / name
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(folder)
            if _is_build_debris(rel):
                continue
            digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{variant}-{digest.hexdigest()[:16]}"


def _is_build_debris(rel: Path) -> bool:
    """Caches and local install metadata: present in a developer's checkout, absent from a fresh clone."""
    return (
        bool(_IGNORED_PARTS & set(rel.parts))
        or rel.suffix == ".pyc"
        or any(part.endswith(".egg-info") for part in rel.parts)
    )


@dataclass(frozen=True)
class StageImageArgs:
    repository: str  # e.g. registry.example.com/issue-titles/stages
    gpu: bool
    registry: RegistryCredentials  # its password a secret
    context: Path = STAGES_DIR


class StageImage(pulumi.ComponentResource):
    """The image every pipeline step runs (`stages <command>`); the CUDA TensorFlow build on GPU stacks.

    Pipelines reference it by digest (`repo@sha256:...`), so a pipeline always runs exactly the image built here.
    """

    image_ref: pulumi.Output[str]

    def __init__(self, name: str, args: StageImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:StageImage", name, None, opts)
        variant = "gpu" if args.gpu else "cpu"
        self.tag = content_tag(args.context, variant)
        self.image = docker.Image(
            name,
            image_name=tagged(args.repository, self.tag),
            build=docker.DockerBuildArgs(
                context=str(args.context),
                dockerfile=str(args.context / "Dockerfile"),
                args={"TENSORFLOW": variant},
                platform="linux/amd64",
            ),
            registry=docker.RegistryArgs(
                server=args.registry.server,
                username=args.registry.username,
                password=pulumi.Output.secret(args.registry.password),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.image_ref = self.image.repo_digest
        self.register_outputs({"image_ref": self.image_ref, "tag": self.tag})

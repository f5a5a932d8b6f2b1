"""The pickled Pachyderm providers load where Pulumi loads them: a dynamic provider host that cannot import `infra`.

How Pulumi does it (pulumi/pulumi v3.259.0, read against the installed SDK):
- sdk/python/lib/pulumi/dynamic/dynamic.py, `serialize_provider`: `dill.dumps(provider, recurse=True)`, base64, into
  the resource's `__provider` input (and so into the state);
- sdk/python/dist/pulumi-resource-pulumi-python: the engine starts `python -u -m pulumi.dynamic` (from the project's
  virtualenv) and reads the gRPC port it prints;
- sdk/python/lib/pulumi/dynamic/__main__.py, `get_provider`: `dill.loads(base64.b64decode(props["__provider"]))` on
  every Check / Diff / Create / Read / Update / Delete.
The host below runs in a project directory where, as after the modules were renamed or moved, neither `infra` nor
`pipelines` (which the provider imports) can be imported. A provider pickled by reference
(`infra.pachyderm_provider.PipelineProvider`) fails to load; ours is pickled by source (infra/pachyderm_provider.py,
`BySource`) and answers.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from infra.pachyderm_provider import PipelineProvider, RepoProvider
from pipelines import PipelineSettings, all_pipelines
from tests.infra.harness import ROOT

ADDRESS = "grpc://pachd.example:30650"
SETTINGS = PipelineSettings(
    stage_image="registry.example.com/stages@sha256:" + "ab" * 32, serving_image_repo="registry.example.com/serving"
)
URN = "urn:pulumi:test::issue-titles::pulumi-python:dynamic:Resource::train"


def train_spec() -> dict[str, Any]:
    return next(s for s in all_pipelines(SETTINGS) if s["pipeline"]["name"] == "train")


def host_env() -> dict[str, str]:
    """The environment the engine gives the host: nothing that would put this repository on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env["PULUMI_PROJECT"] = "issue-titles"
    return env


def moved_away(project: Path) -> Path:
    """A project directory (first on the host's sys.path, as with `python -m`) where the repository's packages are
    gone: importing `infra` or `pipelines` fails, as after a rename or move."""
    for package in ("infra", "pipelines"):
        (project / package).mkdir()
        (project / package / "__init__.py").write_text("raise ImportError('moved away')\n")
    return project


@pytest.fixture
def host(tmp_path: Path) -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    """`python -u -m pulumi.dynamic` as pulumi-resource-pulumi-python starts it, in a directory without the repo."""
    moved_away(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.dynamic"],
        cwd=tmp_path,
        env=host_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        port = process.stdout.readline().decode().strip()
        assert port.isdigit(), f"the host printed no port: {port!r} {process.stderr.read().decode()[-2000:]}"
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = provider_pb2_grpc.ResourceProviderStub(channel)
        stub.Configure(provider_pb2.ConfigureRequest(args=struct_pb2.Struct()), timeout=60)  # as the engine does
        yield stub
        channel.close()
    finally:
        process.kill()
        process.wait(timeout=30)


def wire(props: dict[str, Any]) -> struct_pb2.Struct:
    loop = asyncio.new_event_loop()  # not asyncio.run: that would unset the current loop other tests' mocks use
    try:
        return loop.run_until_complete(rpc.serialize_properties(props, {}))
    finally:
        loop.close()


@pytest.mark.parametrize("module", ["infra.pachyderm_provider", "pipelines.validate"])
def test_host_cannot_import_the_repository(tmp_path: Path, module: str) -> None:
    """The premise: in the host's directory the repository's modules do not resolve (`-m` puts it first on the path)."""
    moved_away(tmp_path)
    probe = subprocess.run(
        [sys.executable, "-m", module], cwd=tmp_path, env=host_env(), capture_output=True, text=True, timeout=60
    )
    assert probe.returncode != 0 and "moved away" in probe.stderr


def test_the_pipeline_provider_checks_a_spec_in_a_host_that_cannot_import_infra(host: Any) -> None:
    news = {
        "__provider": serialize_provider(PipelineProvider()),
        "pachd_address": ADDRESS,
        "project": "default",
        "name": "not a name!",
        "spec": train_spec(),
        "auth_token": "a-root-token",
    }
    response = host.Check(provider_pb2.CheckRequest(urn=URN, olds=wire({}), news=wire(news)), timeout=120)
    # The answer comes from PipelineProvider.check itself: it names the bad field.
    assert {failure.property for failure in response.failures} == {"name"}


def test_the_pipeline_provider_diffs_in_a_host_that_cannot_import_infra(host: Any) -> None:
    provider = serialize_provider(PipelineProvider())
    olds = {
        "__provider": provider,
        "pachd_address": ADDRESS,
        "project": "default",
        "name": "train",
        "spec": train_spec(),
    }
    changed = train_spec()
    changed["transform"]["cmd"] = [*changed["transform"]["cmd"], "--epochs", "3"]
    response = host.Diff(
        provider_pb2.DiffRequest(id="default/train", urn=URN, olds=wire(olds), news=wire({**olds, "spec": changed})),
        timeout=120,
    )
    assert response.changes == provider_pb2.DiffResponse.DIFF_SOME


def test_the_repo_provider_loads_in_a_host_that_cannot_import_infra(host: Any) -> None:
    news = {
        "__provider": serialize_provider(RepoProvider()),
        "pachd_address": "not an address",
        "project": "default",
        "name": "raw_data",
        "description": "",
        "auth_token": "a-root-token",
    }
    response = host.Check(provider_pb2.CheckRequest(urn=URN, olds=wire({}), news=wire(news)), timeout=120)
    assert [failure.property for failure in response.failures] == ["pachd_address"]


def test_the_serialized_provider_is_the_same_in_every_run() -> None:
    """Pulumi sorts dicts so an unchanged provider gives the same `__provider` (no spurious diff); so must we, even
    with a different string-hash seed in each process."""
    script = (
        "from pulumi.dynamic.dynamic import serialize_provider; "
        "from infra.pachyderm_provider import PipelineProvider; print(serialize_provider(PipelineProvider()))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env={**host_env(), "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_the_pickle_names_no_repository_module() -> None:
    """Only the builtin `eval` is referenced by name; the provider's code travels as source text."""
    import pickletools

    pickled = base64.b64decode(serialize_provider(PipelineProvider()))
    ops = list(pickletools.genops(pickled))
    lookups = [index for index, (op, _, _) in enumerate(ops) if op.name in ("GLOBAL", "STACK_GLOBAL")]
    assert len(lookups) == 1, "one name is looked up when loading: builtins.eval"
    module, name = (arg for _, arg, _ in ops[lookups[0] - 4 : lookups[0]] if isinstance(arg, str))
    assert (module, name) == ("builtins", "eval")


def test_evaluating_the_program_leaves_the_pickler_as_it_found_it() -> None:
    """pulumi.dynamic wraps pickle._Pickler's dict methods per provider and never unwraps them; the harness does,
    or a long test run pickles through hundreds of nested wrappers until RecursionError."""
    import pickle

    from tests.infra import harness

    # pickle._Pickler's private methods are not in typeshed's stubs.
    before = (pickle._Pickler._batch_setitems, pickle._Pickler.save_dict)  # type: ignore[attr-defined]
    harness.run_program("minikube")
    assert (pickle._Pickler._batch_setitems, pickle._Pickler.save_dict) == before  # type: ignore[attr-defined]

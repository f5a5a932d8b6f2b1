"""The private parts of MLServer, uvicorn and pulumi-kubernetes (and Pulumi's mocks) that this project overrides or
reads still exist, with the shape it relies on, in the versions the dev lock pins.

A dependency upgrade that renames one of them would otherwise break at run time only (serving without its guard, a
custom resource without its status). Each check names the file that relies on it."""

from __future__ import annotations

import ast
import inspect
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# distribution -> why this project reaches into it
OVERRIDDEN = {
    "mlserver": "serving/server.py: IssueTitleServer subclasses MLServer",
    "uvicorn": "serving/http_guard.py: JSONErrorsH11Protocol subclasses H11Protocol",
    "pulumi-kubernetes": "infra/custom_resources.py: CustomResourceWithStatus overrides _internal_init",
    "pulumi": "infra/pachyderm_provider.py, infra/render.py: rpc and the mocks' monitor",
    "pytest-xdist": "tests/conftest.py: MainServerModulesTogether overrides LoadScopeScheduling._split_scope",
}


def locked_versions() -> dict[str, str]:
    pinned = {}
    for line in (ROOT / "requirements-dev.lock").read_text(encoding="utf-8").splitlines():
        if line and not line[0].isspace() and not line.startswith("#") and "==" in line:
            name, rest = line.split("==", 1)
            pinned[name] = rest.split()[0].split(";")[0]
    return pinned


def assigned_attributes(function: object) -> set[str]:
    """`self.NAME = ...` targets in a function's source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
    return {
        target.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self"
    }


@pytest.mark.parametrize("distribution", sorted(OVERRIDDEN))
def test_the_installed_version_is_the_locked_one(distribution: str) -> None:
    """The checks below run against what is installed: it must be what the lock pins (`make venv` installs it)."""
    assert version(distribution) == locked_versions()[distribution], OVERRIDDEN[distribution]


def test_mlserver_server_internals_that_issue_title_server_overrides() -> None:
    from mlserver import MLServer
    from mlserver.handlers.dataplane import DataPlane
    from mlserver.registry import MultiModelRegistry
    from mlserver.rest.server import RESTServer

    for name in ("_create_servers", "_add_signal_handlers", "add_custom_handlers", "stop"):
        assert callable(getattr(MLServer, name, None)), f"MLServer.{name}"
    assert "sig" in inspect.signature(MLServer.stop).parameters  # _on_stop_signal: self.stop(sig=sig)
    assert {"_data_plane", "_model_registry"} <= assigned_attributes(MLServer.__init__)
    assert {"_rest_server", "_grpc_server"} <= assigned_attributes(MLServer._create_servers)
    # RESTServer: the FastAPI app the guard is installed on, and the uvicorn Config factory that is wrapped.
    assert "_app" in assigned_attributes(RESTServer.__init__)
    assert callable(getattr(RESTServer, "_get_config", None))
    assert "self._get_config()" in inspect.getsource(RESTServer.start)  # the wrapper is called at start
    assert list(inspect.signature(DataPlane.infer).parameters)[:4] == ["self", "payload", "name", "version"]
    assert callable(MultiModelRegistry.get_model) and callable(MultiModelRegistry.get_models)


def test_uvicorn_internals_that_the_json_400_protocol_overrides() -> None:
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    assert list(inspect.signature(H11Protocol.send_400_response).parameters) == ["self", "msg"]
    assert "self.conn" in inspect.getsource(H11Protocol.__init__)
    assert "self.transport" in inspect.getsource(H11Protocol.connection_made)
    config = inspect.signature(uvicorn.Config.__init__).parameters
    assert {"http", "timeout_graceful_shutdown"} <= set(config)


def test_pulumi_kubernetes_custom_resource_init_that_custom_resource_with_status_overrides() -> None:
    import pulumi_kubernetes as k8s

    resource = k8s.apiextensions.CustomResource
    parameters = list(inspect.signature(resource._internal_init).parameters)
    assert parameters == ["__self__", "resource_name", "api_version", "kind", "opts", "metadata", "spec", "__props__"]
    assert "_internal_init(" in inspect.getsource(resource.__init__)  # __init__ still routes through it


def test_pulumi_runtime_internals_that_the_provider_and_the_mocks_harness_use() -> None:
    from pulumi.runtime import mocks, rpc

    assert isinstance(rpc.UNKNOWN, str)
    for name in ("deserialize_properties", "is_rpc_secret", "unwrap_rpc_secret"):
        assert callable(getattr(rpc, name, None)), f"pulumi.runtime.rpc.{name}"
    for name in ("RegisterResource", "ReadResource"):
        assert callable(getattr(mocks.MockMonitor, name, None)), f"MockMonitor.{name}"


def test_xdist_loadscope_groups_tests_by_split_scope() -> None:
    """tests/conftest.py groups several modules into one unit of work by overriding `_split_scope`; the scheduler
    must still call it for every test id when it makes its units (LoadScopeScheduling.schedule)."""
    from xdist.scheduler import LoadFileScheduling, LoadScopeScheduling

    assert "_split_scope" in vars(LoadScopeScheduling) and "_split_scope" in vars(LoadFileScheduling)
    assert "self._split_scope(nodeid)" in inspect.getsource(LoadScopeScheduling.schedule)

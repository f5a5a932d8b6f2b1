"""Run the real `__main__.py` under `pulumi.runtime.set_mocks` and record every resource it registers.

No Pulumi CLI and no cluster: the mock monitor stands in for the engine. Besides the inputs Pulumi's mocks hand to
`new_resource`, this records what they drop: parent, dependencies, provider, and which input paths were sent as
secrets (read from the wire format, before the secret wrapper is unwrapped).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "issue-titles"
STACKS = ("minikube", "gke-gpu")
# A password no real value could contain by accident: finding it anywhere in plain text is a leak.
TEST_PASSWORD = "pw-7d1e3a-must-never-appear-in-plain-text"
# Pachyderm's root token (`issue-titles:pachdRootToken`), held to the same rule.
TEST_ROOT_TOKEN = "root-token-5c9b2f-must-never-appear-in-plain-text"
ROOT_TOKEN_KEY = "issue-titles:pachdRootToken"
# How the wire format marks a secret ({sig: secret-sig, "value": ...}) is told by the SDK's public
# `rpc.is_rpc_secret` / `rpc.unwrap_rpc_secret` (pulumi 3.272.0, sdk/python/lib/pulumi/runtime/rpc.py).
is_secret_wrapper = rpc.is_rpc_secret


@dataclass
class Recorded:
    """One registered resource, as the engine would see it."""

    type_: str
    name: str
    inputs: dict[str, Any]
    urn: str
    parent: str
    depends_on: list[str]
    provider: str
    custom: bool
    read: bool = False  # a `.get()` of an existing object, not something the program creates
    protect: bool = False
    retain_on_delete: bool = False
    secret_paths: set[str] = field(default_factory=set)
    wire: dict[str, Any] = field(default_factory=dict)  # inputs as sent, secrets still wrapped


class ProgramRun(list):
    """The resources of one evaluation (a list of Recorded) plus the stack outputs."""

    stack: str
    outputs: dict[str, Any]
    secret_outputs: set[str]

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self if r.type_ == type_]

    def one(self, type_: str, name: str | None = None) -> Recorded:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def manifests(self) -> list[dict[str, Any]]:
        """Every Kubernetes object the program itself declares, as the manifest the provider would apply."""
        found = []
        for r in self:
            if r.read or not r.type_.startswith("kubernetes:") or "kind" not in r.inputs:
                continue
            found.append({k: v for k, v in r.inputs.items() if not k.startswith("__")})
        return found

    def by_urn(self, urn: str) -> Recorded:
        return next(r for r in self if r.urn == urn)

    def ancestors(self, resource: Recorded) -> list[Recorded]:
        chain, parent = [], resource.parent
        urns = {r.urn: r for r in self}
        while parent in urns:
            chain.append(urns[parent])
            parent = urns[parent].parent
        return chain

    def depends_transitively(self, resource: Recorded, on: Recorded) -> bool:
        """True when `resource` (or a component containing it) depends on `on` or on a component containing it."""
        urns = {r.urn: r for r in self}
        wanted = {on.urn} | {r.urn for r in self if on.urn in {a.urn for a in self.ancestors(r)}}
        seen: set[str] = set()
        stack = [resource] + self.ancestors(resource)
        while stack:
            current = stack.pop()
            for dep in current.depends_on:
                if dep in wanted:
                    return True
                if dep not in seen and dep in urns:
                    seen.add(dep)
                    stack.append(urns[dep])
        return False


def normalise(value: Any) -> Any:
    """Mocks turn every number into a float; schemas want integers where the program wrote them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def unwrap_secrets(value: Any) -> Any:
    """Inputs with secrets replaced by their plain values (the wire format wraps them in a marker object)."""
    if isinstance(value, dict):
        if is_secret_wrapper(value):
            return unwrap_secrets(rpc.unwrap_rpc_secret(value))
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def without_secrets(value: Any) -> Any:
    """The wire inputs with every secret-wrapped value cut out: what would be stored in plain state."""
    if isinstance(value, dict):
        if is_secret_wrapper(value):
            return "[secret]"
        return {k: without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def _secret_paths(value: Any, path: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        if is_secret_wrapper(value):
            return {path or "."}
        for key, item in value.items():
            found |= _secret_paths(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found |= _secret_paths(item, f"{path}[{index}]")
    return found


class _Mocks(pulumi.runtime.Mocks):
    """Plausible outputs for the few resources whose outputs the program reads."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        if args.typ == "docker:index/image:Image":
            name = state["imageName"]
            state["repoDigest"] = name.rsplit(":", 1)[0] + "@sha256:" + hashlib.sha256(name.encode()).hexdigest()
        elif args.typ == "gcp:container/cluster:Cluster":
            state.update(
                name=args.name, endpoint="203.0.113.10", masterAuth={"clusterCaCertificate": "Q0EtY2VydGlmaWNhdGU="}
            )
        elif args.typ == "gcp:serviceaccount/account:Account":
            email = f"{state['accountId']}@{state['project']}.iam.gserviceaccount.com"
            state.update(email=email, name=f"projects/{state['project']}/serviceAccounts/{email}")
        elif args.typ == "gcp:storage/bucket:Bucket":
            state["name"] = f"{args.name}-4f2a"
        elif args.typ == "kubernetes:core/v1:Service" and args.resource_id:
            state["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.20"}]}}
        elif args.typ == "kubernetes:helm.sh/v3:Release":
            state["status"] = {"status": "deployed", "name": state.get("name")}
        return (args.resource_id or f"{args.name}-id"), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.recorded: list[Recorded] = []

    def _record(self, request: Any, urn: str, read: bool) -> None:
        wire = json_format.MessageToDict(request.properties if read else request.object)
        inputs = rpc.deserialize_properties(request.properties if read else request.object)
        self.recorded.append(
            Recorded(
                type_=request.type,
                name=request.name,
                inputs=normalise(unwrap_secrets(dict(inputs))),
                urn=urn,
                parent=request.parent,
                depends_on=[] if read else list(request.dependencies),
                provider=request.provider,
                custom=True if read else bool(request.custom),
                read=read,
                secret_paths=_secret_paths(wire),
                wire=wire,
                protect=bool(getattr(request, "protect", False)),
                retain_on_delete=bool(getattr(request, "retainOnDelete", False)),
            )
        )

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self._record(request, response.urn, read=False)
        return response

    def ReadResource(self, request: Any) -> Any:
        response = super().ReadResource(request)
        self._record(request, response.urn, read=True)
        return response


def stack_config(stack: str) -> dict[str, str]:
    """The stack's committed config, as the engine passes it: every value a string."""
    document = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()) or {}
    return {
        key: value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in (document.get("config") or {}).items()
    }


def run_program(
    stack: str,
    config_overrides: dict[str, str | None] | None = None,
    *,
    password: str | None = TEST_PASSWORD,
    password_is_secret: bool = True,
    preview: bool = False,
    root_token: str | None = TEST_ROOT_TOKEN,
    root_token_is_secret: bool = True,
) -> ProgramRun:
    """Evaluate `__main__.py` for `stack` with its committed config (plus overrides; None removes a key)."""
    config = stack_config(stack)
    if password is not None:
        config["registry:password"] = password
    if root_token is not None:
        config[ROOT_TOKEN_KEY] = root_token
    for key, value in (config_overrides or {}).items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    secret_keys = ["registry:password"] if password_is_secret else []
    secret_keys += [ROOT_TOKEN_KEY] if root_token_is_secret else []

    # As the Python language host does (pulumi/pulumi sdk/python/cmd/pulumi-language-python-exec): the engine hands
    # the config over in PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS, and the host loads them with set_all_config.
    saved_env = {key: os.environ.get(key) for key in ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS")}
    os.environ["PULUMI_CONFIG"], os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(config), json.dumps(secret_keys)
    pulumi.runtime.set_all_config(pulumi.runtime.get_config_env(), pulumi.runtime.get_config_secret_keys_env())
    pulumi.runtime.reset_options(project=PROJECT, stack=stack)  # a fresh Stack resource per run: no leaked outputs
    monitor = _RecordingMonitor(_Mocks())
    pulumi.runtime.set_mocks(_Mocks(), project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    run = ProgramRun()
    run.stack = stack
    run.outputs, run.secret_outputs = {}, set()

    failures: list[BaseException] = []

    async def read_outputs() -> None:
        for key, value in pulumi.runtime.get_root_resource().outputs.items():
            output = pulumi.Output.from_input(value)
            run.outputs[key] = normalise(await output.future(with_unknowns=True))
            if await output.is_secret():
                run.secret_outputs.add(key)

    @pulumi.runtime.test  # evaluates, then waits for every registration and output the program started
    def program() -> Any:
        try:
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        except BaseException as error:
            failures.append(error)
            return None
        return read_outputs()

    # pulumi.dynamic's serialize_provider (pulumi 3.x sdk/python/lib/pulumi/dynamic/dynamic.py) wraps
    # pickle._Pickler._batch_setitems in a sorting wrapper on every call and never restores it: one process that
    # evaluates the program hundreds of times (this test suite) stacks hundreds of wrappers until pickling a
    # provider raises RecursionError. A real `pulumi up` serializes a handful, so the harness undoes it per run.
    pickler_methods = {name: pickle._Pickler.__dict__[name] for name in ("_batch_setitems", "save_dict")}
    try:
        program()
    except BaseException:
        if not failures:
            raise
    finally:
        for name, method in pickler_methods.items():
            setattr(pickle._Pickler, name, method)
        pulumi.runtime.set_all_config({}, [])
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if failures:
        # The program's own error (e.g. a ConfigError), not the follow-on errors of resources it left half-made.
        raise failures[0]
    run.extend(monitor.recorded)
    return run

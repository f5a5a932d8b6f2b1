"""What `pulumi up` would create for a stack, offline: the real `__main__.py` evaluated under Pulumi's mocks.

No Pulumi CLI, no cluster, no state: the mock monitor stands in for the engine and records every resource the program
registers, with what Pulumi's mocks hand to `new_resource` and what they drop (parent, dependencies, provider, and
which input paths were sent as secrets, read from the wire format before the secret wrapper is unwrapped).

    python -m infra.render minikube [--set KEY=VALUE ...] [--unset KEY] [--kind Namespace] [--format yaml|json]

The secrets (`registry:password`, `issue-titles:pachdRootToken`) are not known offline: placeholders stand in for
them, handed over as secrets, and printed as `[secret]` unless `--show-secrets` is given. With `serving:modelTag` (or
`canaryTag`) `latest` the program reads the newest export from pachd while it evaluates; the CLI then dials only a
loopback address given with `--pachd-address` (a port-forward or a local pachd), never the stack's cluster.

The test suite (tests/infra/harness.py) and the benchmark (bench/program.py) evaluate the program through here.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import ipaddress
import json
import os
import pickle
import runpy
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from infra.config import KNOWN_KEYS, LATEST, PROJECT, ConfigError

ROOT = Path(__file__).resolve().parents[1]
STACKS = ("minikube", "gke-gpu")
PASSWORD_KEY = "registry:password"
ROOT_TOKEN_KEY = "issue-titles:pachdRootToken"
PACHD_ADDRESS_KEY = "issue-titles:pachdAddress"
SECRET_KEYS = (PASSWORD_KEY, ROOT_TOKEN_KEY)
# What stands in for the secrets offline: handed over as secrets, so they flow where the real ones would.
PLACEHOLDER_PASSWORD = "offline-render-placeholder-password"
PLACEHOLDER_ROOT_TOKEN = "offline-render-placeholder-root-token"
MASK = "[secret]"
# How the wire format marks a secret ({sig: secret-sig, "value": ...}) is told by the SDK's public
# `rpc.is_rpc_secret` / `rpc.unwrap_rpc_secret` (pulumi 3.272.0, sdk/python/lib/pulumi/runtime/rpc.py).
is_secret_wrapper = rpc.is_rpc_secret


class RenderError(ValueError):
    """The render was asked for something it will not do (a bad key, a non-loopback pachd); names the fix."""


@dataclass
class Recorded:
    """One registered resource, as the engine would see it."""

    type_: str
    name: str
    inputs: dict[str, Any]  # secrets unwrapped: what the provider receives
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
    masked: dict[str, Any] = field(default_factory=dict)  # inputs with every secret value replaced by MASK


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
        stack = [resource, *self.ancestors(resource)]
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
            return MASK
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


class OfflineMocks(pulumi.runtime.Mocks):
    """Plausible outputs for the few resources whose outputs the program reads (documentation addresses only)."""

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
        elif args.typ == "pulumi:pulumi:StackReference":
            # Offline there is no state: the stack has deployed nothing before (`latest` reads no previous models).
            state.update(outputs={}, secretOutputNames=[])
        return (args.resource_id or f"{args.name}-id"), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mocks' monitor, keeping a Recorded of every registration and read."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.recorded: list[Recorded] = []

    def _record(self, request: Any, urn: str, read: bool) -> None:
        wire = json_format.MessageToDict(request.properties if read else request.object)
        inputs = dict(rpc.deserialize_properties(request.properties if read else request.object))
        self.recorded.append(
            Recorded(
                type_=request.type,
                name=request.name,
                inputs=normalise(unwrap_secrets(inputs)),
                urn=urn,
                parent=request.parent,
                depends_on=[] if read else list(request.dependencies),
                provider=request.provider,
                custom=True if read else bool(request.custom),
                read=read,
                secret_paths=_secret_paths(wire),
                wire=wire,
                masked=normalise(without_secrets(inputs)),
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


def stack_file(stack: str) -> Path:
    return ROOT / "stacks" / f"Pulumi.{stack}.yaml"


def stack_names() -> list[str]:
    """The stacks with a config file in stacks/."""
    return sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in (ROOT / "stacks").glob("Pulumi.*.yaml"))


def stack_config(stack: str) -> dict[str, str]:
    """The stack's committed plain config, as the engine passes it: every value a string.

    Encrypted values (`{secure: ...}`, what `pulumi config set --secret` writes) cannot be read offline: they are
    left out, and the secrets get their placeholders in `run_program`."""
    document = yaml.safe_load(stack_file(stack).read_text()) or {}
    return {
        key: value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in (document.get("config") or {}).items()
        if not isinstance(value, dict)
    }


def run_program(
    stack: str,
    config_overrides: dict[str, str | None] | None = None,
    *,
    password: str | None = PLACEHOLDER_PASSWORD,
    password_is_secret: bool = True,
    preview: bool = False,
    root_token: str | None = PLACEHOLDER_ROOT_TOKEN,
    root_token_is_secret: bool = True,
    mocks: Callable[[], pulumi.runtime.Mocks] = OfflineMocks,
) -> ProgramRun:
    """Evaluate `__main__.py` for `stack` with its committed config (plus overrides; None removes a key).

    Raises what the program raises (a ConfigError names the key). Dials nothing itself: only the program's own
    `serving:modelTag latest` lookup reaches pachd, at the stack's pachdAddress (`render` guards that)."""
    config = stack_config(stack)
    if password is not None:
        config[PASSWORD_KEY] = password
    if root_token is not None:
        config[ROOT_TOKEN_KEY] = root_token
    for key, value in (config_overrides or {}).items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    secret_keys = [PASSWORD_KEY] if password_is_secret else []
    secret_keys += [ROOT_TOKEN_KEY] if root_token_is_secret else []

    # As the Python language host does (pulumi/pulumi sdk/python/cmd/pulumi-language-python-exec): the engine hands
    # the config over in PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS, and the host loads them with set_all_config.
    saved_env = {key: os.environ.get(key) for key in ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS")}
    os.environ["PULUMI_CONFIG"], os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(config), json.dumps(secret_keys)
    pulumi.runtime.set_all_config(pulumi.runtime.get_config_env(), pulumi.runtime.get_config_secret_keys_env())
    pulumi.runtime.reset_options(project=PROJECT, stack=stack)  # a fresh Stack resource per run: no leaked outputs
    the_mocks = mocks()
    monitor = RecordingMonitor(the_mocks)
    pulumi.runtime.set_mocks(the_mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    run = ProgramRun()
    run.stack = stack
    run.outputs, run.secret_outputs = {}, set()

    failures: list[BaseException] = []

    async def read_outputs() -> None:
        root: Any = pulumi.runtime.get_root_resource()  # the Stack resource, which holds the exports
        for key, value in root.outputs.items():
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
    # evaluates the program hundreds of times (the test suite) stacks hundreds of wrappers until pickling a
    # provider raises RecursionError. A real `pulumi up` serializes a handful, so each evaluation here undoes it.
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


# --- the offline render: what users read ---------------------------------------------------------------------------


def check_key(key: str) -> None:
    """A config key the program reads (`namespace:name`); secrets are refused: they never go on a command line."""
    namespace, colon, name = key.partition(":")
    if not colon or not namespace or not name:
        raise RenderError(f"bad config key {key!r}: use namespace:name, e.g. serving:replicas")
    if key in SECRET_KEYS:
        raise RenderError(
            f"`{key}` is a secret: the render stands a placeholder in for it (a secret never goes on a command line)"
        )
    known = KNOWN_KEYS.get(namespace)
    if known is not None and name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean `{namespace}:{close[0]}`? " if close else ""
        raise RenderError(f"unknown config key `{key}`: {hint}known `{namespace}:` keys are {', '.join(known)}")


def is_loopback(address: str) -> bool:
    """True when a pachd address (grpc://HOST:PORT) names this machine only."""
    try:
        host = urlsplit(address).hostname
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_offline(stack: str, overrides: dict[str, str | None]) -> None:
    """Refuse an evaluation that would dial past this machine: with `latest` the program reads pachd while it
    evaluates, at the stack's pachdAddress (minikube) or the load balancer's address (GKE, here a mock's)."""
    config = {**stack_config(stack), **overrides}
    following = [key for key in ("serving:modelTag", "serving:canaryTag") if config.get(key) == LATEST]
    if not following:
        return
    address = config.get(PACHD_ADDRESS_KEY)
    if address is None or not is_loopback(address):
        where = f"pachd at {address}" if address else "pachd at the cluster's load balancer"
        raise RenderError(
            f"`{following[0]} {LATEST}` reads the newest export from {where} while the program evaluates; "
            "the offline render dials only this machine: run pachd on 127.0.0.1 (e.g. `kubectl port-forward "
            "svc/pachd 30650`) and pass --pachd-address grpc://127.0.0.1:30650, or render a pinned tag "
            f"(--set {following[0]}=<export job ID>)"
        )


def render(
    stack: str,
    overrides: dict[str, str | None] | None = None,
    *,
    show_secrets: bool = False,
    kinds: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The resources `pulumi up` would create for `stack` (config overrides applied; None removes a key): type, name,
    parent name and inputs, ordered by URN (so two renders diff cleanly), secrets as `[secret]` unless
    `show_secrets`. `kinds` keeps the resources whose Kubernetes kind or type name (the last part of the type token,
    e.g. Release, Image) is one of them, in any case."""
    overrides = dict(overrides or {})
    for key in overrides:
        check_key(key)
    check_offline(stack, overrides)
    run = run_program(stack, overrides)
    names = {r.urn: r.name for r in run}
    wanted = {kind.lower() for kind in kinds}
    found = []
    for r in sorted(run, key=lambda r: r.urn):  # registration order varies between runs; the URN does not
        if r.read:  # an existing object the program reads, not one it creates
            continue
        inputs = r.inputs if show_secrets else r.masked
        if wanted and not {str(inputs.get("kind", "")).lower(), r.type_.rsplit(":", 1)[-1].lower()} & wanted:
            continue
        found.append(
            {
                "type": r.type_,
                "name": r.name,
                "parent": names.get(r.parent),
                "inputs": {k: v for k, v in inputs.items() if not k.startswith("__")},  # no pickled provider blobs
            }
        )
    if wanted and not found:
        kinds_here = sorted({str(r.inputs.get("kind") or r.type_.rsplit(":", 1)[-1]) for r in run if not r.read})
        raise RenderError(f"no resource of kind {', '.join(kinds)} in stack {stack}; kinds: {', '.join(kinds_here)}")
    return found


def _assignment(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE, e.g. serving:replicas=3")
    return key, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.render",
        description="Print the resources `pulumi up` would create for a stack, offline (no cluster, no Pulumi CLI).",
    )
    parser.add_argument("stack", help=f"a stack with a config file in stacks/ ({', '.join(stack_names())})")
    parser.add_argument(
        "--set",
        dest="assignments",
        metavar="KEY=VALUE",
        type=_assignment,
        action="append",
        default=[],
        help="override a config value, e.g. serving:modelTag=<export job ID> (repeatable)",
    )
    parser.add_argument(
        "--unset", metavar="KEY", action="append", default=[], help="remove a config key of the stack (repeatable)"
    )
    parser.add_argument(
        "--kind",
        action="append",
        default=[],
        help="only this Kubernetes kind or type name, e.g. SeldonDeployment, Release (repeatable)",
    )
    parser.add_argument("--format", choices=("yaml", "json"), default="yaml")
    parser.add_argument("--show-secrets", action="store_true", help="print the secrets' placeholders where they flow")
    parser.add_argument(
        "--pachd-address",
        metavar="grpc://127.0.0.1:PORT",
        help="a loopback pachd for `serving:modelTag latest`, which reads the newest export while evaluating",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.stack not in stack_names():
        parser.error(f"no stack {args.stack!r}: stacks/ has {', '.join(stack_names())}")
    overrides: dict[str, str | None] = dict.fromkeys(args.unset)
    overrides.update(dict(args.assignments))
    if args.pachd_address is not None:
        if not is_loopback(args.pachd_address):
            parser.error(f"--pachd-address {args.pachd_address}: the offline render dials only 127.0.0.1/localhost")
        overrides[PACHD_ADDRESS_KEY] = args.pachd_address
    try:
        resources = render(args.stack, overrides, show_secrets=args.show_secrets, kinds=args.kind)
    except (RenderError, ConfigError) as error:
        parser.error(str(error))
    except Exception as error:  # the program's own failure (e.g. pachd unreachable): its message, no traceback
        print(f"{parser.prog}: the program failed: {error}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(resources, indent=2))
    else:
        print(yaml.safe_dump(resources, sort_keys=False, width=120), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

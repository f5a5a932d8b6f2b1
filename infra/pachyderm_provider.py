"""Pachyderm repos and pipelines as Pulumi resources: a dynamic provider over `pachyderm_sdk`.

Pulumi pickles a dynamic provider (with dill) into the stack state and runs it in its own process. So the providers
keep no state and no client, import the SDK only inside their methods, and reach pachd only through infra/pachd.py
(`call`, whose `connect` is the one seam tests replace with a fake that has the SDK's `pfs` / `pps` method
signatures). How they are pickled is
explained at `BySource` below: by source text (this module's and that of the repository modules it imports), not
by import path.

Pulumi 3.x `DiffResult` carries `changes`, `replaces` and `delete_before_replace` to the engine, but no per-field
detailed diff; the engine then diffs the old and new inputs itself. The spec is therefore kept as a structured input
(not a JSON string), so `pulumi preview --diff` shows the nested fields that changed (`spec.transform.cmd`, ...).
The provider's `update` computes the same changed fields (`changed_fields`) and reprocesses when they touch what a
datum computes (`should_reprocess`); `diff` only says whether anything changed and what forces a replacement.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)
from pulumi.runtime.rpc import UNKNOWN  # what Pulumi puts in place of a value it does not know yet (a preview)

from infra.pachd import (
    REFUSED,
    TOKEN_CONFIG,
    TOKEN_FIX,
    PachydermError,
    address_problem,
    call,
    is_not_found,
    is_unreachable,
    pachd_status,
)
from pipelines.validate import pipeline_name, spec_problems

DEFAULT_PROJECT = "default"
# Parts of a spec that change what a datum computes: a change there must reprocess data already processed.
DATUM_FIELDS = ("transform", "input")
_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")  # Pachyderm's rule for project, repo and pipeline names
# Words too common in pachd's messages to point at a spec field on their own.
_GENERIC_KEYS = {"pipeline", "name", "project", "spec", "request", "input"}


AUTH_TOKEN = "auth_token"  # the resources' input holding pachd's root token (a secret)


# --- pachd errors -----------------------------------------------------------------------------------------------------


def _call_pachd(
    props: Mapping[str, Any],
    request: Callable[[Any], Any],
    *,
    what: str,
    action: str,
    spec: Mapping[str, Any] | None = None,
    missing_ok: bool = False,
) -> bool:
    """Make one pachd call, `request(client)` with the resource's address and token: True when it went through,
    False when the object was missing (with `missing_ok`); any pachd error becomes a PachydermError that says what
    failed, where, and what to check."""
    address = props["pachd_address"]
    try:
        call(address, props.get(AUTH_TOKEN), request)
        return True
    except Exception as error:
        status = pachd_status(error)
        if status is None:
            raise
        if missing_ok and is_not_found(*status):
            return False
        _fail(status, what, address, action, spec)


def _spec_paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Every key path of a spec, e.g. `transform.cmd`, `input.cross[0].pfs.repo`."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from _spec_paths(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _spec_paths(item, f"{prefix}[{index}]")


def _squash(text: str) -> str:
    """pachd names fields in Go (`request.Transform.Image`) or snake case; specs are camelCase: compare squashed."""
    return re.sub(r"\[\d+\]", "", text).lower().replace("_", "")


def field_in_message(details: str, spec: Mapping[str, Any] | None) -> str | None:
    """The spec field a pachd message is about, if it names one (`transform.image`, `reprocessSpec`, ...)."""
    unknown = re.search(r'unknown field "([^"]+)"', details)
    if unknown:
        return unknown.group(1)
    if not spec:
        return None
    message = _squash(details).replace("request.", "")
    paths = list(dict.fromkeys(_spec_paths(spec)))

    def mentioned(word: str) -> bool:
        return re.search(rf"(?<![\w.]){re.escape(word)}(?![\w])", message) is not None

    dotted = sorted((p for p in paths if "." in p), key=lambda p: -len(p))
    for path in dotted:
        if mentioned(_squash(path)):
            return path
    for path in sorted(paths, key=lambda p: p.count(".")):
        key = _squash(path.rsplit(".", 1)[-1])
        if key not in _GENERIC_KEYS and (mentioned(key) or (key.endswith("s") and mentioned(key[:-1]))):
            return path
    return None


def _fail(
    status: tuple[str, str], what: str, address: str, action: str, spec: Mapping[str, Any] | None = None
) -> NoReturn:
    """Raise a PachydermError that says which object, which pachd, what went wrong and what to check."""
    code, details = status
    if is_unreachable(status):
        raise PachydermError(
            f"{what}: cannot reach pachd at {address} ({code}: {details}). Check that the Pachyderm release is "
            f"deployed and pachd is running (kubectl get pods -l app=pachd), that the address is right (stack "
            f"config `issue-titles:pachdAddress`; on minikube grpc://$(minikube ip):30080) and that this machine "
            f"can reach it."
        ) from None
    if code in REFUSED:
        raise PachydermError(
            f"{what}: pachd at {address} refused to {action} ({code}: {details}). Pachyderm's auth is on: the "
            f"program calls pachd with the root token from the stack's secret `{TOKEN_CONFIG}`, which must be the "
            f"one pachd was deployed with (the `pachyderm-root-token` Secret); set it with {TOKEN_FIX}."
        ) from None
    if code == "ALREADY_EXISTS" or "already exists" in details.lower():
        raise PachydermError(
            f"{what}: it already exists at pachd {address}, outside this stack ({details}). Delete it (pachctl) "
            f"or rename it in the program, then run `pulumi up` again."
        ) from None
    field = field_in_message(details, spec)
    raise PachydermError(
        f"{what}: pachd at {address} rejected the request to {action}: {details}"
        + (f" (field: {field})" if field else "")
        + f" [{code}]"
    ) from None


# --- values -----------------------------------------------------------------------------------------------------------


def _is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value == UNKNOWN


def _contains_unknown(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_contains_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_contains_unknown(v) for v in value)
    return _is_unknown(value)


def normalise(value: Any) -> Any:
    """Plain JSON data with whole numbers as ints: Pulumi hands every number back as a float (1 -> 1.0), and
    pachd's integer fields (parallelismSpec.constant, datumTries, gpu.number) want integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    return value


def changed_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the spec fields that differ; a list (e.g. `transform.cmd`) counts as one field."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changed: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                changed.append(path)
            else:
                changed += changed_fields(old[key], new[key], path)
        return changed
    return [] if normalise(old) == normalise(new) else [prefix or "."]


def pipeline_request(project: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The CreatePipelineRequest sent to pachd: the spec as given, in `project` unless it names one itself."""
    request = copy.deepcopy(normalise(spec))
    pipeline = request.setdefault("pipeline", {})
    if not (pipeline.get("project") or {}).get("name"):
        pipeline["project"] = {"name": project}
    return request


def _spec_project(spec: Any) -> Any:
    if not isinstance(spec, Mapping):
        return None
    project = (spec.get("pipeline") or {}).get("project")
    return project.get("name") if isinstance(project, Mapping) else None


def _address_failures(props: Mapping[str, Any]) -> list[CheckFailure]:
    address = props.get("pachd_address")
    problem = None if _is_unknown(address) else address_problem(address)
    return [CheckFailure("pachd_address", f"{address!r} is not a pachd address: {problem}")] if problem else []


def _token_failures(props: Mapping[str, Any]) -> list[CheckFailure]:
    """The token must be there (auth is on); its value is never put into a message."""
    token = props.get(AUTH_TOKEN)
    if _is_unknown(token) or (isinstance(token, str) and token.strip()):
        return []
    return [
        CheckFailure(
            AUTH_TOKEN,
            f"no pachd auth token: Pachyderm's auth is on, and every call to pachd needs "
            f"the root token; set it with {TOKEN_FIX}",
        )
    ]


def _name_failures(props: Mapping[str, Any], keys: tuple[str, ...]) -> list[CheckFailure]:
    failures = []
    for key in keys:
        value = props.get(key)
        if not _is_unknown(value) and (not isinstance(value, str) or not _NAME.match(value)):
            failures.append(CheckFailure(key, f"{value!r} is not a Pachyderm name (letters, digits, _ and -)"))
    return failures


def _replaced_keys(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """A pachd object cannot be renamed or moved to another project: those changes replace it."""
    return [key for key in ("project", "name") if olds.get(key) != news.get(key)]


def _stored(props: Mapping[str, Any]) -> dict[str, Any]:
    """What goes into the state: every input (diff and delete read them back from there), numbers normalised."""
    return {k: normalise(v) for k, v in props.items() if k != "__provider"}


def _created(props: Mapping[str, Any]) -> CreateResult:
    """A created repo or pipeline: its id is `<project>/<name>`, as pachctl names it."""
    return CreateResult(f"{props.get('project') or DEFAULT_PROJECT}/{props['name']}", _stored(props))


# --- repos ------------------------------------------------------------------------------------------------------------


def _repo_message(props: Mapping[str, Any]) -> Any:
    from pachyderm_sdk.api import pfs

    return pfs.Repo(name=props["name"], type="user", project=pfs.Project(name=props.get("project") or DEFAULT_PROJECT))


def _repo_label(props: Mapping[str, Any]) -> str:
    return f"repo '{props.get('name')}' (project '{props.get('project') or DEFAULT_PROJECT}')"


# --- serialization ----------------------------------------------------------------------------------------------------

# Packages of this repository: a module of theirs that the provider imports travels with it, as source.
REPOSITORY_PACKAGES = ("pipelines", "infra")
# Evaluated by the dynamic provider host when it unpickles a provider (its globals: `loader`, the source of
# `_load_by_source`, and that function's arguments): defines the loader, then calls it.
_REBUILD = "(exec(loader, scope), scope['_load_by_source'](source, bundle, class_name, tag, loader))[1]"


def _repository_sources(source: str, found: dict[str, str] | None = None) -> dict[str, str]:
    """The source of every repository module `source` imports at module level (`from pkg.mod import ...`),
    recursively, by module name."""
    import ast
    import importlib.util

    found = {} if found is None else found
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.ImportFrom)
            and not node.level
            and node.module
            and node.module.split(".")[0] in REPOSITORY_PACKAGES
            and node.module not in found
        ):
            spec = importlib.util.find_spec(node.module)
            if spec is None or spec.origin is None:
                raise ImportError(f"cannot find the source of {node.module}, which the Pachyderm provider imports")
            with open(spec.origin, encoding="utf-8") as handle:
                found[node.module] = handle.read()
            _repository_sources(found[node.module], found)
    return found


def _load_by_source(source: str, bundle: dict[str, str], class_name: str, tag: str, loader: str) -> Any:
    """In the dynamic provider host: load `source` and the repository modules it imports (`bundle`) under private
    names, once per host process and version (`tag`), and return a new `class_name` from it."""
    import builtins
    import sys
    import types

    prefix = "issue_titles_provider_" + tag
    main = sys.modules.get(prefix)
    if main is None:

        def bundled_import(
            name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (), level: int = 0
        ) -> Any:
            if level or name not in bundle:
                return builtins.__import__(name, globals_, locals_, fromlist, level)
            private = f"{prefix}.{name}"
            if private not in sys.modules:
                sys.modules[private] = module = types.ModuleType(private)
                module.__dict__["__builtins__"] = scope
                exec(compile(bundle[name], f"<{name}, by source>", "exec"), module.__dict__)
            module = sys.modules[private]
            if fromlist:
                return module
            raise ImportError(f"`import {name}` is not supported by source; use `from {name} import ...`")

        scope = dict(builtins.__dict__, __import__=bundled_import)
        sys.modules[prefix] = main = types.ModuleType(prefix)
        main.__dict__.update(
            __builtins__=scope, __provider_source__=source, __provider_bundle__=bundle, __provider_loader__=loader
        )
        exec(compile(source, f"<{prefix}, by source>", "exec"), main.__dict__)
    return getattr(main, class_name)()


class BySource:
    """Pickles a provider as source text (its module's and that of the repository modules it imports) plus the
    class name, never as an import path.

    Pulumi stores `dill.dumps(provider, recurse=True)` in the state (pulumi/pulumi sdk/python/lib/pulumi/dynamic/
    dynamic.py, serialize_provider) and, for every later preview, update, refresh or destroy, loads it with
    `dill.loads` in a separate `python -u -m pulumi.dynamic` process (dynamic/__main__.py, get_provider;
    sdk/python/dist/pulumi-resource-pulumi-python starts it from the project directory). dill pickles a class that
    can be imported by reference: the state would say `infra.pachyderm_provider.PipelineProvider` (and its imports
    of `infra.pachd` and `pipelines.validate` would be resolved again in the host), so renaming or moving a module
    would break `refresh` and `destroy` of every stack created before. Pickling the classes' bytecode instead would
    tie the state to one Python minor version. So `__reduce__` hands pickle a call of the builtin `eval` with the
    sources as strings: unpickling compiles them afresh, with whatever Python the host runs, under private module
    names (tagged by a hash of the sources, so an old resource's provider and a new one's load side by side), and
    resolves no module of this repository from the host's path. Only `from pkg.mod import ...` at module level is
    followed for repository modules (tests/infra/test_provider_serialization.py loads a pickled provider in a host
    where `infra` and `pipelines` cannot be imported at all).
    """

    def __reduce__(self) -> tuple[Any, ...]:
        source, bundle, tag = _provider_sources()
        scope: dict[str, Any] = {
            "loader": _loader_source(),
            "scope": {},
            "source": source,
            "bundle": bundle,
            "class_name": type(self).__name__,
            "tag": tag,
        }
        return eval, (_REBUILD, scope), (self.__dict__ or None)


@functools.cache
def _provider_sources() -> tuple[str, dict[str, str], str]:
    """(this module's source, the repository modules it imports by name, a tag of both), worked out once per process:
    Pulumi pickles the provider of every repo and pipeline it registers, and reading and parsing the same files for
    each one cost more than the rest of the program's evaluation. The result is shared: do not change it."""
    source: str | None = globals().get("__provider_source__")
    bundle: dict[str, str] | None = globals().get("__provider_bundle__")
    if source is None or bundle is None:  # set together when a pickled provider is rebuilt (_REBUILD)
        with open(__file__, encoding="utf-8") as handle:
            source = handle.read()
        bundle = _repository_sources(source)
    digest = hashlib.sha256(source.encode())
    for name in sorted(bundle):
        digest.update(name.encode() + b"\0" + bundle[name].encode())
    return source, bundle, digest.hexdigest()[:16]


@functools.cache
def _loader_source() -> str:
    """The source of `_load_by_source`, also where it was itself loaded by source (no file to read there)."""
    import inspect
    import textwrap

    stored = globals().get("__provider_loader__")
    return stored if stored else textwrap.dedent(inspect.getsource(_load_by_source))


class _ObjectProvider(BySource, ResourceProvider):
    """What deleting and refreshing a repo and a pipeline have in common: one pachd call each, for which a missing
    object is no error. Subclasses say how to name the object, inspect it and remove it."""

    serialize_as_secret_always = False  # nothing secret is captured; keeps the state readable
    pronoun = "it"  # how the object is named in an action ("delete it")

    def _label(self, props: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def _inspect(self, client: Any, props: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def _remove(self, client: Any, props: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def _unless_missing(self, props: Mapping[str, Any], request: Callable[[Any], Any], verb: str) -> bool:
        """`request(client)`: True when it went through, False when the object was not there."""
        return _call_pachd(props, request, what=self._label(props), action=f"{verb} {self.pronoun}", missing_ok=True)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        self._unless_missing(props, lambda client: self._remove(client, props), "delete")  # gone is what destroy wants

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        found = self._unless_missing(props, lambda client: self._inspect(client, props), "inspect")
        # Deleted outside Pulumi: an empty id makes `pulumi refresh` drop it from the state.
        return ReadResult(id_, dict(props)) if found else ReadResult("", {})


class RepoProvider(_ObjectProvider):
    """A PFS input repo (`raw_data`): created empty, deleted with its data on destroy."""

    def _label(self, props: Mapping[str, Any]) -> str:
        return _repo_label(props)

    def _inspect(self, client: Any, props: Mapping[str, Any]) -> Any:
        return client.pfs.inspect_repo(repo=_repo_message(props))

    def _remove(self, client: Any, props: Mapping[str, Any]) -> Any:
        return client.pfs.delete_repo(repo=_repo_message(props), force=False)

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(
            news, _address_failures(news) + _token_failures(news) + _name_failures(news, ("project", "name"))
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = _replaced_keys(olds, news)
        changes = bool(replaces) or any(
            olds.get(k) != news.get(k) for k in ("description", "pachd_address", AUTH_TOKEN)
        )
        return DiffResult(changes=changes, replaces=replaces, delete_before_replace=False)

    def _send(self, props: Mapping[str, Any], *, update: bool) -> None:
        _call_pachd(
            props,
            lambda client: client.pfs.create_repo(
                repo=_repo_message(props), description=props.get("description", ""), update=update
            ),
            what=_repo_label(props),
            action="update its description" if update else "create it",
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._send(props, update=False)
        return _created(props)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if olds.get("description") != news.get("description"):  # a new address or token only updates the state
            self._send(news, update=True)
        return UpdateResult(_stored(news))


# --- pipelines --------------------------------------------------------------------------------------------------------


def _pipeline_label(props: Mapping[str, Any]) -> str:
    return f"pipeline '{props.get('name') or pipeline_name(props.get('spec')) or '?'}'"


def should_reprocess(spec: Mapping[str, Any], fields: list[str], override: bool | None = None) -> bool:
    """Whether an update recomputes datums the previous version already processed.

    pachd keeps their results unless asked (`update pipeline --reprocess`). A new command, image or input changes
    what a datum computes, so those reprocess; resources, parallelism or a description do not. `every_job`
    pipelines reprocess anyway. `override` (the resource's `reprocess` input) decides when set.
    """
    if override is not None:
        return bool(override)
    if spec.get("reprocessSpec") == "every_job":
        return True
    return any(re.split(r"[.\[]", field)[0] in DATUM_FIELDS for field in fields)


class PipelineProvider(_ObjectProvider):
    """A PPS pipeline from its full CreatePipelineRequest spec: create, update in place, delete."""

    pronoun = "the pipeline"

    def _label(self, props: Mapping[str, Any]) -> str:
        return _pipeline_label(props)

    def _inspect(self, client: Any, props: Mapping[str, Any]) -> Any:
        return client.pps.inspect_pipeline(pipeline=self._pipeline_message(props), details=False)

    def _remove(self, client: Any, props: Mapping[str, Any]) -> Any:
        # its output repo goes with it (keep_repo=False)
        return client.pps.delete_pipeline(
            pipeline=self._pipeline_message(props), all=False, force=False, keep_repo=False, must_exist=False
        )

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = _address_failures(news) + _token_failures(news) + _name_failures(news, ("project", "name"))
        spec = news.get("spec")
        if _is_unknown(spec):
            return CheckResult(news, failures)
        if not isinstance(spec, Mapping):
            return CheckResult(news, [*failures, CheckFailure("spec", "must be a CreatePipelineRequest object")])
        # The spec's own rules are pipelines/validate.py's, the same the program and localpach apply. Not a repeat:
        # the program validates while values such as transform.image (the stage image's digest) are still Outputs,
        # which it skips as pending; here they are resolved, so this is where those fields are first checked.
        failures += [CheckFailure("spec", problem) for problem in spec_problems(spec, pending=_is_unknown)]
        name, project = pipeline_name(spec), _spec_project(spec)
        if isinstance(name, str) and name and not _is_unknown(name) and name != news.get("name"):
            failures.append(CheckFailure("name", f"{news.get('name')!r} differs from spec.pipeline.name {name!r}"))
        if project is not None and not _is_unknown(project) and project != news.get("project"):
            failures.append(
                CheckFailure("project", f"{news.get('project')!r} differs from spec.pipeline.project.name {project!r}")
            )
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = _replaced_keys(olds, news)
        fields = changed_fields(olds.get("spec") or {}, news.get("spec") or {})
        other = any(
            normalise(olds.get(k)) != normalise(news.get(k)) for k in ("pachd_address", "reprocess", AUTH_TOKEN)
        )
        return DiffResult(changes=bool(replaces or fields or other), replaces=replaces, delete_before_replace=False)

    def _send(self, props: Mapping[str, Any], *, update: bool, reprocess: bool) -> None:
        spec = props["spec"]
        request = json.dumps(pipeline_request(props.get("project") or DEFAULT_PROJECT, spec), sort_keys=True)
        _call_pachd(
            props,
            lambda client: client.pps.create_pipeline_v2(
                create_pipeline_request_json=request, dry_run=False, update=update, reprocess=reprocess
            ),
            what=_pipeline_label(props),
            action="update the pipeline" if update else "create the pipeline",
            spec=spec,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._send(props, update=False, reprocess=False)
        return _created(props)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        fields = changed_fields(olds.get("spec") or {}, news.get("spec") or {})
        if fields:  # a new address, token or reprocess setting alone only updates the state
            self._send(news, update=True, reprocess=should_reprocess(news["spec"], fields, news.get("reprocess")))
        return UpdateResult(_stored(news))

    def _pipeline_message(self, props: Mapping[str, Any]) -> Any:
        from pachyderm_sdk.api import pfs, pps

        return pps.Pipeline(name=props["name"], project=pfs.Project(name=props.get("project") or DEFAULT_PROJECT))


# --- resources --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PachydermRepoArgs:
    pachd_address: pulumi.Input[str]
    name: str
    project: str = DEFAULT_PROJECT
    description: str = ""
    auth_token: pulumi.Input[str] | None = None  # pachd's root token; required by the provider's check


class _PachdObject(Resource):
    """A repo or pipeline in pachd: where pachd is, the object's project and name, and pachd's root token.

    The token goes in as a secret input, and the output of the same name is kept secret in the state too (the
    dynamic provider host does not accept secrets: the engine hands it plain values, `acceptSecrets: False` in
    pulumi/dynamic/__main__.py, so the output is marked here rather than left to the provider)."""

    pachd_address: pulumi.Output[str]
    project: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(
        self,
        provider: ResourceProvider,
        name: str,
        props: dict[str, Any],
        auth_token: pulumi.Input[str] | None,
        opts: pulumi.ResourceOptions | None,
    ) -> None:
        token = pulumi.Output.secret(auth_token) if auth_token is not None else None
        secret_outputs = pulumi.ResourceOptions(additional_secret_outputs=[AUTH_TOKEN])
        opts = pulumi.ResourceOptions.merge(opts or pulumi.ResourceOptions(), secret_outputs)
        super().__init__(provider, name, {**props, AUTH_TOKEN: token}, opts)


class PachydermRepo(_PachdObject):
    """A Pachyderm input repo, owned by the stack: `pulumi destroy` deletes it."""

    description: pulumi.Output[str]

    def __init__(self, name: str, args: PachydermRepoArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props = {
            "pachd_address": args.pachd_address,
            "project": args.project,
            "name": args.name,
            "description": args.description,
        }
        super().__init__(RepoProvider(), name, props, args.auth_token, opts)


@dataclass(frozen=True)
class PachydermPipelineArgs:
    pachd_address: pulumi.Input[str]
    spec: pulumi.Input[Mapping[str, Any]]  # CreatePipelineRequest, camelCase JSON form; may hold Outputs
    project: str = DEFAULT_PROJECT
    reprocess: bool | None = None  # None: reprocess on updates that change transform or input (should_reprocess)
    auth_token: pulumi.Input[str] | None = None  # pachd's root token; required by the provider's check


class PachydermPipeline(_PachdObject):
    """A Pachyderm pipeline, owned by the stack: a changed spec updates it in place, a new name replaces it."""

    spec: pulumi.Output[dict]

    def __init__(self, name: str, args: PachydermPipelineArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        spec = args.spec
        if isinstance(spec, Mapping):
            name_: Any = pipeline_name(spec)
        else:
            name_ = pulumi.Output.from_input(spec).apply(pipeline_name)  # type: ignore[arg-type]  # an Input, not only an Output
        props: dict[str, Any] = {
            "pachd_address": args.pachd_address,
            "project": args.project,
            "name": name_,
            "spec": spec,
        }
        if args.reprocess is not None:
            props["reprocess"] = args.reprocess
        super().__init__(PipelineProvider(), name, props, args.auth_token, opts)

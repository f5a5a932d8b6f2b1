"""MLServer settings for the issue-title model, built in code and writable as the JSON files MLServer reads.

`serve()` uses `build_settings` directly; `write_settings` puts the same values in a bundle as
`model-settings.json` / `settings.json` (what `mlserver start <bundle>` reads). Writing needs no MLServer, so
`stages build` can call it in the training image.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from issue_titles.contract import MODEL_NAME, MODEL_SETTINGS_FILE, RUNTIME, SERVER_SETTINGS_FILE, SERVING_PORT

from .limits import ServingLimits

if TYPE_CHECKING:  # MLServer is only needed to start a server; writing the files works without it
    from mlserver.settings import ModelSettings, Settings

INPUT_NAME = "bodies"
OUTPUT_NAME = "titles"
# V2 metadata `platform`: what runs the model (a Keras 3 model on TensorFlow), in the Triton-style naming.
PLATFORM = "tensorflow_keras"


def model_settings_dict(
    model_uri: str,
    limits: ServingLimits,
    *,
    runtime_limits: dict[str, Any] | None = None,
    predictor_loader: str | None = None,
    name: str = MODEL_NAME,
) -> dict[str, Any]:
    """MLServer model settings: our runtime, adaptive batching on, the bundle as `parameters.uri`.

    `runtime_limits` go to `parameters.extra`, where the runtime reads them (absent ones fall back to the
    `ISSUE_TITLES_*` variables of the serving process, then to the defaults).
    """
    extra: dict[str, Any] = dict(runtime_limits or {})
    if predictor_loader:
        extra["predictor_loader"] = predictor_loader
    return {
        "name": name,
        "implementation": RUNTIME,
        "max_batch_size": limits.adaptive_batch_size,
        "max_batch_time": limits.adaptive_batch_time,
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "parameters": {"uri": model_uri, "extra": extra},
    }


def server_settings_dict(
    host: str,
    port: int,
    *,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    max_request_bytes: int = ServingLimits.max_request_bytes,
) -> dict[str, Any]:
    """MLServer server settings: in-process model (no worker pool), no debug pages, metrics only on request."""
    return {
        "host": host,
        "http_port": port,
        "grpc_port": grpc_port if grpc_port is not None else port + 1,
        "grpc_max_message_length": max_request_bytes,
        "metrics_endpoint": "/metrics" if metrics_port is not None else None,
        "metrics_port": metrics_port if metrics_port is not None else port + 2,
        # One TensorFlow model in the serving process; parallel workers would each load a copy.
        "parallel_workers": 0,
        "debug": False,
        "load_models_at_startup": True,
    }


def build_settings(
    model_dir: Path,
    host: str,
    port: int,
    limits: ServingLimits,
    *,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    predictor_loader: str | None = None,
    tracing_server: str | None = None,
) -> tuple["Settings", "ModelSettings"]:
    """Settings objects for an in-code MLServer start, with every limit resolved (nothing left to env).

    Only what the server must fix is passed explicitly (address, ports, one in-process model, no debug pages,
    metrics on or off); every other MLServer setting still comes from its `MLSERVER_*` variable (MLServer's
    `Settings` reads them: `MLSERVER_METRICS_ENDPOINT`, `MLSERVER_METRICS_REST_SERVER_PREFIX`,
    `MLSERVER_TRACING_SERVER`, `MLSERVER_SERVER_NAME`, `MLSERVER_CORS_SETTINGS`, `MLSERVER_GZIP_ENABLED`,
    `MLSERVER_LOGGING_SETTINGS`, ...). The model's version is the job ID in the bundle's provenance.json.
    """
    from mlserver.settings import ModelSettings, Settings

    from .observability import model_version, read_provenance

    model_dir = Path(model_dir).resolve()
    fixed = server_settings_dict(
        host, port, grpc_port=grpc_port, metrics_port=metrics_port, max_request_bytes=limits.max_request_bytes
    )
    if metrics_port is not None:
        fixed.pop("metrics_endpoint")  # on: MLSERVER_METRICS_ENDPOINT may move the path (default /metrics)
    if tracing_server:
        fixed["tracing_server"] = tracing_server
    server = Settings(**fixed, model_repository_root=str(model_dir))
    model_fields = model_settings_dict(
        str(model_dir), limits, runtime_limits=limits.as_dict(), predictor_loader=predictor_loader
    )
    version = model_version(read_provenance(model_dir))
    model_fields["platform"] = PLATFORM
    if version is not None:
        model_fields["parameters"]["version"] = version
        model_fields["versions"] = [version]
    model = ModelSettings(**model_fields)
    return server, model


def write_settings(
    bundle_dir: Path,
    *,
    host: str = "0.0.0.0",
    port: int = SERVING_PORT,
    model_uri: str = ".",
    **limit_overrides: Any,
) -> tuple[Path, Path]:
    """Write `model-settings.json` and `settings.json` into a serving bundle; returns both paths.

    `model_uri` is relative to the bundle (MLServer resolves it against the settings file's folder).
    Only explicitly given limits are written, so the container's environment can still change the rest.
    """
    bundle_dir = Path(bundle_dir)
    explicit = {name: value for name, value in limit_overrides.items() if value is not None}
    limits = ServingLimits.from_env({}, **explicit)  # validates names and values; ignores this process's env
    model_path = bundle_dir / MODEL_SETTINGS_FILE
    server_path = bundle_dir / SERVER_SETTINGS_FILE
    _write_json_atomically(model_path, model_settings_dict(model_uri, limits, runtime_limits=explicit))
    _write_json_atomically(server_path, server_settings_dict(host, port, max_request_bytes=limits.max_request_bytes))
    return model_path, server_path


def _write_json_atomically(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(content, file, indent=2, sort_keys=False)
            file.write("\n")
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; the image's non-root user must read it
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

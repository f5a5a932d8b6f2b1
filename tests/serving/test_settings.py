"""Serving limits and MLServer settings, without starting a server."""

import asyncio
import json
import stat

import pytest
from mlserver.settings import ModelSettings, Settings
from mlserver.utils import get_model_uri

from issue_titles.serving.limits import ServingLimits
from issue_titles.serving.runtime import IssueTitleRuntime
from issue_titles.serving.settings import build_settings, write_settings


def test_limits_come_from_defaults_then_env_then_arguments() -> None:
    env = {"ISSUE_TITLES_MAX_BATCH_BODIES": "32", "ISSUE_TITLES_MAX_BODY_CHARS": "5000"}

    limits = ServingLimits.from_env(env, max_body_chars=7000)

    assert limits.max_request_bytes == ServingLimits().max_request_bytes
    assert limits.max_batch_bodies == 32
    assert limits.max_body_chars == 7000


def test_limit_env_var_that_is_not_a_number_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="ISSUE_TITLES_MAX_REQUEST_BYTES must be a whole number, got 'lots'"):
        ServingLimits.from_env({"ISSUE_TITLES_MAX_REQUEST_BYTES": "lots"})


def test_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_bodies must be a whole number >= 1, got 0"):
        ServingLimits.from_env({}, max_batch_bodies=0)


def test_unknown_limit_is_refused() -> None:
    with pytest.raises(TypeError, match="unknown serving limit\\(s\\): max_bodies"):
        ServingLimits.from_env({}, max_bodies=3)


def test_written_settings_load_in_mlserver_with_batching_on(tmp_path) -> None:
    model_path, server_path = write_settings(tmp_path, max_body_chars=9000)

    model = ModelSettings.parse_file(str(model_path))
    server = Settings.model_validate(json.loads(server_path.read_text()))

    assert model.name == "issue-summarization"
    # (not `model.implementation`: for a settings file MLServer re-imports the module, a new class object)
    assert model.implementation_ == f"{IssueTitleRuntime.__module__}.{IssueTitleRuntime.__qualname__}"
    assert model.max_batch_size > 1 and model.max_batch_time > 0  # MLServer's adaptive batching needs both
    assert model.parameters.extra == {"max_body_chars": 9000}
    assert asyncio.run(get_model_uri(model)) == str(tmp_path)  # "." resolves to the bundle folder
    assert (server.host, server.http_port, server.parallel_workers, server.debug) == ("0.0.0.0", 9000, 0, False)
    assert server.metrics_endpoint is None


def test_written_settings_are_readable_by_the_image_user(tmp_path) -> None:
    for path in write_settings(tmp_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_in_code_settings_carry_every_resolved_limit(tmp_path) -> None:
    limits = ServingLimits(max_request_bytes=1000, adaptive_batch_size=4, adaptive_batch_time=0.05)

    server, model = build_settings(tmp_path, "127.0.0.1", 9100, limits, metrics_port=9200)

    assert (server.http_port, server.metrics_port, server.metrics_endpoint) == (9100, 9200, "/metrics")
    assert server.grpc_max_message_length == 1000
    assert (model.max_batch_size, model.max_batch_time) == (4, 0.05)
    assert model.parameters.uri == str(tmp_path.resolve())
    assert model.parameters.extra == limits.as_dict()

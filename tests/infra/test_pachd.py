"""One pachd address rule (infra/pachd.py) for the stack config, the provider's check and the client."""

from __future__ import annotations

import pytest

from infra import pachd
from infra.config import ConfigError
from infra.pachyderm_provider import RepoProvider
from tests.infra.harness import run_program

REFUSED = [
    "http://10.0.0.1:30650",
    "https://pachd.example.com:443",
    "10.0.0.1:30650",
    "grpc://host:30650/api",
    "grpc://user@host:30650",
]


def _repo(address: str) -> dict[str, str]:
    return {"pachd_address": address, "project": "default", "name": "raw_data", "description": "", "auth_token": "t"}


@pytest.mark.parametrize("address", REFUSED)
def test_an_address_other_than_grpc_or_grpcs_is_refused_by_config_provider_and_client(address: str) -> None:
    with pytest.raises(ConfigError, match=r"issue-titles:pachdAddress.*use grpc://HOST:PORT"):
        run_program("minikube", {"issue-titles:pachdAddress": address})
    failures = {f.property: f.reason for f in RepoProvider().check({}, _repo(address)).failures}
    assert "use grpc://HOST:PORT" in failures["pachd_address"]
    with pytest.raises(pachd.PachydermError, match="invalid pachd address"):
        pachd.connect(address, "t")


@pytest.mark.parametrize("address", ["grpc://192.168.49.2:30080", "grpcs://pachd.example.com:443", "grpc://pachd"])
def test_grpc_and_grpcs_addresses_pass_config_provider_and_client(address: str) -> None:
    run_program("minikube", {"issue-titles:pachdAddress": address})
    assert RepoProvider().check({}, _repo(address)).failures == []
    assert pachd.connect(address, "t") is not None  # the SDK's client; it dials only on the first call

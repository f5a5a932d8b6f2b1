"""pachd access for the Pulumi program: the one address rule, the client, and how pachd's errors are read.

Shared by the Pachyderm provider (infra/pachyderm_provider.py, which reaches it as source in the dynamic provider
host: import only `from infra.pachd import ...` there) and by the model lookup (infra/model_source.py). It imports
nothing of this repository, and the SDK only inside its functions, so the provider host needs no more than the SDK.

`connect` is the one seam tests replace with a fake that has the SDK's `pfs` / `pps` method signatures: every call
to pachd goes through `call` or `connect`, both looked up here at call time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# pachyderm_sdk's Client.from_pachd_address (pachyderm-sdk 2.12.x, pachyderm_sdk/client.py) accepts grpc, grpcs,
# http and https (http(s) only as other names for plaintext / TLS gRPC) and a bare HOST:PORT (taken as grpc). The
# program takes one spelling, the one pachctl's contexts and Pachyderm's docs use: grpc:// or grpcs:// (TLS), a host
# and an optional port, so an address that passes here reaches pachd as written.
_ADDRESS = re.compile(r"^(grpc|grpcs)://[^/:@\s]+(:(?P<port>[0-9]{1,5}))?$")
ADDRESS_EXAMPLE = "grpc://192.168.49.2:30080"
UNREACHABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED")  # gRPC codes of a pachd that cannot be reached
REFUSED = ("UNAUTHENTICATED", "PERMISSION_DENIED")  # gRPC codes of a call pachd's auth refused
TOKEN_CONFIG = "issue-titles:pachdRootToken"
TOKEN_FIX = f"`pulumi config set --secret {TOKEN_CONFIG} <token>` (docs/cluster.md, section 3)"


class PachydermError(Exception):
    """A pachd call failed; the message names the repo or pipeline, the pachd address and what to do."""


def address_problem(address: Any) -> str | None:
    """Why `address` is not a pachd address the program dials (None when it is one)."""
    match = _ADDRESS.match(address) if isinstance(address, str) else None
    if match is None:
        return "use grpc://HOST:PORT (grpcs:// for TLS)"
    port = match.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        return "the port must be 1 to 65535"
    return None


def connect(address: str, auth_token: str | None = None) -> Any:
    """A pachd client for `address` (grpc://host:port) that sends `auth_token` with every call.

    pachyderm_sdk puts the token in each call's gRPC metadata as `authn-token` (pachyderm_sdk/client.py,
    _build_metadata), which pachd's auth interceptor requires of CreateRepo, ListCommit, CreatePipelineV2 and the
    rest once auth is active (pachyderm/pachyderm 2.12.x src/internal/middleware/auth/interceptor.go). Without one
    the SDK would fall back to PACH_PYTHON_AUTH_TOKEN from the environment; the program always passes its own
    ("" when it has none, so no stray variable stands in for the stack's token).
    """
    from pachyderm_sdk import Client

    problem = address_problem(address)
    if problem is not None:
        raise PachydermError(f"invalid pachd address {address!r}: {problem}")
    try:
        return Client.from_pachd_address(address, auth_token=auth_token or "")
    except ValueError as error:
        raise PachydermError(f"invalid pachd address {address!r} ({error}): use grpc://HOST:PORT") from None


def call(address: str, auth_token: str | None, request: Callable[[Any], Any]) -> Any:
    """`request(client)` on a client for `address`: one call to pachd through the seam."""
    return request(connect(address, auth_token))


def pachd_status(error: BaseException) -> tuple[str, str] | None:
    """(gRPC status code name, pachd's message) of an error raised by a pachd call; None for any other error.

    pachyderm_sdk raises grpc.RpcError, except that its interceptor turns "failed to connect" into a
    ConnectionError (from the RpcError) and an inactive auth service into AuthServiceNotActivated.
    """
    import grpc

    if isinstance(error, ConnectionError):
        cause = error.__cause__
        if isinstance(cause, grpc.RpcError):
            return pachd_status(cause)
        if type(error).__name__ == "AuthServiceNotActivated":
            return "UNAUTHENTICATED", str(error)
        return "UNAVAILABLE", str(error).strip() or "connection failed"
    if not isinstance(error, grpc.RpcError):
        return None
    code, details = getattr(error, "code", None), getattr(error, "details", None)
    code_name = getattr(code(), "name", str(code())) if callable(code) else "UNKNOWN"
    text = details() if callable(details) else None
    return code_name, (text or str(error) or code_name).strip()


def is_unreachable(status: tuple[str, str] | None) -> bool:
    """The status of a pachd that could not be reached (not one that answered)."""
    return status is not None and status[0] in UNREACHABLE


def is_not_found(code: str, details: str) -> bool:
    """pachd often answers a missing object with code UNKNOWN and a 'not found' message, not NOT_FOUND."""
    return code == "NOT_FOUND" or "not found" in details.lower() or "does not exist" in details.lower()

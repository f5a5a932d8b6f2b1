"""Virtual environments for real clients whose pins clash with ours, cached in `.venv-clients/`.

seldon-core 1.17.1 pins numpy<2 and protobuf<4 (its METADATA), while MLServer 1.7 needs newer ones, so its
`SeldonClient` runs in its own venv, driven through a subprocess. The venv is installed from
requirements-seldon-client.lock (hashes, `tools/lock.sh`): seldon-core itself without its dependencies, and only what
its client imports (seldon_client.py -> utils.py, flask_utils.py, user_model.py, metrics.py: numpy, protobuf, grpcio,
requests, Flask, prometheus-client); its model-server pins (gunicorn, jaeger-client, ... several of them sdists) stay
out. `make test` builds it before the tests run (`python -m tests.serving.client_envs`); a test that finds it missing
or out of date with the lock builds it then. Tests skip, saying why, only when pip cannot install it (no package index
reachable).
"""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENTS_DIR = REPO_ROOT / ".venv-clients"
SELDON_CLIENT_LOCK = REPO_ROOT / "requirements-seldon-client.lock"
INSTALL_TIMEOUT_S = 900


class ClientUnavailable(Exception):
    """The client's environment could not be created; the message says why (for a skip)."""


def seldon_client_python() -> Path:
    """The Python of a venv with seldon-core 1.17.1's client importable (built from its lock on first use, then
    reused while the lock is unchanged)."""
    return _client_venv("seldon-core-1.17.1", SELDON_CLIENT_LOCK, "from seldon_core.seldon_client import SeldonClient")


def _client_venv(name: str, lock: Path, check: str) -> Path:
    """Under a file lock: pytest-xdist workers (or two test runs) wait for one build instead of racing it."""
    CLIENTS_DIR.mkdir(exist_ok=True)
    with FileLock(str(CLIENTS_DIR / f"{name}.lock")):
        return _build_client_venv(name, lock, check)


def _build_client_venv(name: str, lock: Path, check: str) -> Path:
    fingerprint = hashlib.sha256(repr((sys.version_info[:2], lock.read_bytes())).encode()).hexdigest()[:16]
    venv = CLIENTS_DIR / name
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text() == fingerprint and python.exists():
        return python
    # Built in place; the stamp, written last, marks it complete (an interrupted build is removed and redone).
    shutil.rmtree(venv, ignore_errors=True)
    CLIENTS_DIR.mkdir(exist_ok=True)
    try:
        _run([sys.executable, "-m", "venv", str(venv)])
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes",
              "--no-deps", "-r", str(lock)])  # fmt: skip
        _run([str(python), "-c", check])
    except ClientUnavailable:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    stamp.write_text(fingerprint)
    return python


def _run(command: list[str]) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ClientUnavailable(f"{' '.join(command[:6])} failed: {error}") from None
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise ClientUnavailable(f"{' '.join(command[:6])} failed: " + " / ".join(output))


if __name__ == "__main__":  # `make test`: build (or find up to date) the client venvs before the tests run
    try:
        print(f"clients: {seldon_client_python().parent.parent.relative_to(REPO_ROOT)}")
    except ClientUnavailable as error:
        print(f"clients: seldon-core's client venv could not be built, its tests will skip: {error}", file=sys.stderr)

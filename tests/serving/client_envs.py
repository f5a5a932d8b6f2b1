"""Virtual environments for real clients whose pins clash with ours, created once and cached in `.venv-clients/`.

seldon-core 1.17.1 pins numpy<2 and protobuf<4 (its METADATA), while MLServer 1.7 needs newer ones, so its
`SeldonClient` runs in its own venv, driven through a subprocess. Only the client's imports are installed
(seldon_client.py -> utils.py, flask_utils.py, user_model.py, metrics.py: numpy, protobuf, grpcio, requests, Flask,
prometheus-client); the model-server pins (gunicorn, jaeger-client, ... several of them sdists) are skipped with
`--no-deps`, which keeps the first install to well under a minute. Tests skip, saying why, only when pip cannot
install these (no package index reachable).
"""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENTS_DIR = REPO_ROOT / ".venv-clients"
SELDON_CORE = "seldon-core==1.17.1"
SELDON_CLIENT_DEPENDENCIES = [
    "numpy<2",
    "protobuf>=3.20.2,<4",
    "grpcio<2",
    "requests<3",
    "urllib3<1.27",
    "Flask>=2,<3",
    "werkzeug>=2.1.1,<2.3",
    "prometheus-client>=0.7.1,<0.9",
]
INSTALL_TIMEOUT_S = 900


class ClientUnavailable(Exception):
    """The client's environment could not be created; the message says why (for a skip)."""


def seldon_client_python() -> Path:
    """The Python of a venv with seldon-core 1.17.1's client importable (created on first use, then reused)."""
    return _client_venv(
        "seldon-core-1.17.1",
        [["--no-deps", SELDON_CORE], SELDON_CLIENT_DEPENDENCIES],
        "from seldon_core.seldon_client import SeldonClient",
    )


def _client_venv(name: str, installs: list[list[str]], check: str) -> Path:
    """Under a file lock: pytest-xdist workers (or two test runs) wait for one build instead of racing it."""
    CLIENTS_DIR.mkdir(exist_ok=True)
    with FileLock(str(CLIENTS_DIR / f"{name}.lock")):
        return _build_client_venv(name, installs, check)


def _build_client_venv(name: str, installs: list[list[str]], check: str) -> Path:
    fingerprint = hashlib.sha256(repr((sys.version_info[:2], installs)).encode()).hexdigest()[:16]
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
        for arguments in installs:
            _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *arguments])
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

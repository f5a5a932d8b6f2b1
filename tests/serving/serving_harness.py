"""Running a real model server on 127.0.0.1 for tests: a subprocess on a free port, stopped at the end.

Shared by the serving tests (and usable by other suites): `with ServerProcess(model_dir, log_path).running():`.
"""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

import pytest
import requests

from tests.conftest import shared_build

HERE = Path(__file__).resolve().parent
STAGES_CLI = "import sys; from issue_titles.cli import main; sys.exit(main(sys.argv[1:]))"
START_TIMEOUT_S = 90.0

# Small limits for the main server, set through the documented environment variables.
LIMITS_ENV = {
    "ISSUE_TITLES_MAX_REQUEST_BYTES": "262144",
    "ISSUE_TITLES_MAX_BATCH_BODIES": "64",
    "ISSUE_TITLES_MAX_BODY_CHARS": "20000",
}

TUTORIAL_PAYLOAD = (
    '{"data":{"ndarray":[["issue overview add a new property to disable detection of image stream files those'
    " ended with -is.yml from target directory. expected behaviour by default cube should ot process image"
    " stream files if user does not set it. current behaviour cube always try to execute -is.yml files which"
    " can cause some problems in most of cases, for example if you are using kuberentes instead of openshift"
    ' or if you use together fabric8 maven plugin with cube"]]}}'
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def use_xla_cache(factory: pytest.TempPathFactory) -> Path:
    """Let every real server started from now on share one folder of the test run (all xdist workers) as
    TensorFlow's persistent XLA cache; returns it. Idempotent: the serving and the reliability conftest both call it.

    A real server's warm-up XLA-compiles the decoder for each batch size (about half of its ~16 CPU seconds of
    start-up); the suite starts several servers of the same tiny bundle, so each one after the first loads those
    executables instead of compiling them again. The warm-up itself still runs every batch size, so a server is
    ready exactly as it would be without the cache. TensorFlow uses an entry only when the whole HLO module matches
    the one it was compiled from (strict signature check), and writes each entry to a temporary file moved into
    place, so servers starting at the same time never read half an entry."""
    if ServerProcess.xla_cache is None:
        ServerProcess.xla_cache = shared_build(
            factory, "xla_cache", lambda path: path.mkdir(parents=True, exist_ok=True)
        )
    return ServerProcess.xla_cache


T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """What one call of `side_by_side` returned, or the exception it raised (re-raised by `get`)."""

    value: T | None = None
    error: Exception | None = None

    def get(self) -> T:
        if self.error is not None:
            raise self.error
        assert self.value is not None, "side_by_side's calls return something"
        return self.value


def side_by_side(calls: Mapping[str, Callable[[], T]]) -> dict[str, Outcome[T]]:
    """Run every call at the same time, each in its own thread; each one's outcome, by name.

    For tests whose time is mostly a wait for a server-side timer (the graceful shutdown, the hard-exit backstop):
    each scenario on a server of its own, side by side, takes the longest wait instead of the sum of them. A failure
    is kept in its outcome, so it fails the test that reads that outcome, not its neighbours."""

    def outcome(call: Callable[[], T]) -> Outcome[T]:
        try:
            return Outcome(value=call())
        except Exception as error:
            return Outcome(error=error)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = {name: pool.submit(outcome, call) for name, call in calls.items()}
    return {name: future.result() for name, future in futures.items()}


def real_model_available() -> bool:
    try:
        return all(importlib.util.find_spec(name) for name in ("issue_titles.csvio", "issue_titles.predictor"))
    except ModuleNotFoundError:
        return False


@dataclass
class ServerProcess:
    """A model server in a subprocess, with its log kept for failure messages.

    `via_stages_cli=True` starts it exactly as the serving image does (`stages serve`); otherwise through
    `python -m issue_titles.serving`, which can also swap in a fake predictor.
    """

    model_dir: Path
    log_path: Path
    predictor_loader: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    via_stages_cli: bool = False
    start_arguments: list[str] = field(default_factory=list)
    open_files: int | None = None  # RLIMIT_NOFILE (soft and hard) for the server process, e.g. to test the fd cap
    process: subprocess.Popen | None = None
    metrics_port: int | None = None  # where the server was told to serve /metrics, for tests that scrape it
    # A folder every real server of the test run keeps its XLA executables in (`use_xla_cache`), or None.
    xla_cache: ClassVar[Path | None] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def popen(self) -> subprocess.Popen:
        """The server's subprocess, for tests that signal it, wait for it or read its /proc entry; once started."""
        if self.process is None:
            raise AssertionError("the server was not started (call start() first)")
        return self.process

    def start(self) -> "ServerProcess":
        arguments = ["--model", str(self.model_dir), "--port", str(self.port), *self.start_arguments]
        if self.via_stages_cli:
            assert self.predictor_loader is None, "`stages serve` always loads the real TitlePredictor"
            # The `stages` console script's entry point, runnable without the package being pip-installed.
            command = [sys.executable, "-c", STAGES_CLI, "serve", *arguments]
        else:
            command = [sys.executable, "-m", "issue_titles.serving", *arguments]
        if self.predictor_loader:
            command += ["--predictor-loader", self.predictor_loader]
        env = {**os.environ, **self.env, "TF_CPP_MIN_LOG_LEVEL": "2"}
        if self.xla_cache is not None:
            flags = f"--tf_xla_persistent_cache_directory={self.xla_cache}"
            env["TF_XLA_FLAGS"] = " ".join(filter(None, [env.get("TF_XLA_FLAGS", ""), flags]))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
        self._log = open(self.log_path, "wb")
        preexec = None
        if self.open_files is not None:
            import resource

            limit = self.open_files

            def preexec() -> None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def is_live(self) -> bool:
        try:
            return requests.get(f"{self.url}/v2/health/live", timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or too busy loading to answer
            return False

    def wait_until(self, condition, what: str, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"server exited ({self.process.returncode}) before {what}:\n{self.log()}")
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"server not {what} after {timeout}s:\n{self.log()}")

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> "ServerProcess":
        def ready() -> bool:
            try:
                return requests.get(f"{self.url}/v2/health/ready", timeout=5).status_code == 200
            except requests.RequestException:  # not listening yet, or too busy loading to answer
                return False

        self.wait_until(ready, "ready", timeout)
        return self

    @contextmanager
    def running(self) -> Iterator["ServerProcess"]:
        """Started and ready inside the block, stopped when it ends however it ends (fixtures' one pattern)."""
        self.start()
        try:
            yield self.wait_ready()
        finally:
            self.stop()

    def stop(self, how: int = signal.SIGINT) -> int | None:
        """Signal the server (as Kubernetes or Ctrl-C would), wait for it, and return its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(how)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

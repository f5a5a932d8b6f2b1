"""Fixtures every test area shares: the tiny real model, trained once per test run, and one real local run.

Several areas (stages, serving, reliability, bench) need a trained model of the same tiny kind; training it takes
seconds, and training it once per fixture added up. Under pytest-xdist each worker is its own session, so the
first worker to get here trains into the run's shared temporary folder under a file lock, and the others reuse it.
The same goes for the one real local run of the project's pipelines (`real_local_run`) that the end-to-end and the
secrets tests share. Tests treat these folders as read-only: one that changes a model, a split or a state copies it
first.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from filelock import FileLock

if TYPE_CHECKING:
    from tests.real_local_run import LocalRun
    from tests.serving.serving_harness import ServerProcess


def shared_build(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """`build(folder)` once per test run, also across xdist workers; returns the folder."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = factory.mktemp(name, numbered=False)
        build(folder)
        return folder
    root = factory.getbasetemp().parent / "common-builds"  # the run's folder, above every worker's own
    root.mkdir(exist_ok=True)
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's work folder (raw/, split/, pre_process/, train/), the default architecture: what
    `tests.tiny_model.tiny_train` makes, with the training done by `stages train` through the CLI (in-process) with
    the tiny model's flags, which trains the same weights (one training serves both this and `tiny_cli_training`).
    Read-only."""
    from tests.tiny_model import tiny_prepare

    def build(folder: Path) -> None:
        _cli_training(tiny_prepare(folder), folder)

    return shared_build(tmp_path_factory, "tiny_training", build)


@pytest.fixture(scope="session")
def tiny_bundle_dir(tiny_training: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The serving bundle `stages build` writes for the tiny training (what `tests.tiny_model.tiny_bundle` makes)."""
    from tests.tiny_model import build_tiny_bundle

    return shared_build(tmp_path_factory, "tiny_bundle", lambda folder: build_tiny_bundle(tiny_training, folder))


@pytest.fixture(scope="session")
def tiny_cli_training(tiny_training: Path) -> Path:
    """The tiny training's `stages train` run, its stdout and stderr captured at the file-descriptor level and every
    optimizer step's trainable weights recorded: a folder with train/ (the output), stdout.txt, stderr.txt,
    exit_code.txt and steps.npz (weight j of step i as `s{i}_{j}`). One training serves the tests of the
    stdout/stderr contract (stages/test_cli_refusals, stages/test_progress_and_tensorboard), of the weight average
    (stages/test_weight_averaging) and the single worker the two-worker training is compared with
    (stages/test_distributed_training). Read-only."""
    return tiny_training


@pytest.fixture(scope="session")
def tiny_predictor(tiny_bundle_dir: Path) -> Any:
    """`TitlePredictor.load` of the run's tiny bundle (its recorded decoding), once per session (per xdist worker):
    the decoding tests' modules and the decoding-variants bench test share its model, so the weights are read once and
    its compiled decoders and the reference decoder's calls (tests/stages/graph_reference.py, cached per model) are
    traced once, not per module. Tests change its decoding with `with_decoding` (a new predictor, the same model) and
    must not change it."""
    from issue_titles.predictor import TitlePredictor

    return TitlePredictor.load(tiny_bundle_dir)


def _cli_training(tiny_training: Path, folder: Path) -> None:
    """`stages train` on `tiny_training`/pre_process into `folder`/train, recorded as `tiny_cli_training` says."""
    import io
    import sys
    import tempfile

    import numpy as np

    from issue_titles.cli import main as stages_main
    from issue_titles.train import BestEpoch
    from pipelines.specs import cli_flags
    from tests.tiny_model import TINY_TRAIN

    folder.mkdir(parents=True, exist_ok=True)
    steps: list[list[np.ndarray]] = []

    def record(self: BestEpoch, batch: int, logs: object = None) -> None:
        steps.append([variable.numpy() for variable in self.model.trainable_weights])

    args = ["train", "--input", str(tiny_training / "pre_process"), "--output", str(folder / "train")]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, pytest.MonkeyPatch.context() as patch:
        patch.setattr(BestEpoch, "on_train_batch_end", record, raising=False)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        python_streams = sys.stdout, sys.stderr
        sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), encoding="utf-8", write_through=True)
        sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), encoding="utf-8", write_through=True)
        try:
            code = stages_main(args + cli_flags(**TINY_TRAIN))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = python_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        for handle, name in ((out, "stdout.txt"), (err, "stderr.txt")):
            handle.seek(0)
            (folder / name).write_bytes(handle.read())
    (folder / "exit_code.txt").write_text(str(code))
    arrays: dict[str, Any] = {f"s{i}_{j}": w for i, step in enumerate(steps) for j, w in enumerate(step)}
    np.savez(folder / "steps.npz", **arrays)


@pytest.fixture(scope="session")
def real_local_run(tmp_path_factory: pytest.TempPathFactory) -> LocalRun:
    """One real run of the project's pipelines through the `localpach` CLI, with a registry password configured
    (`tests.real_local_run`): the end-to-end test serves its build, the secrets test searches all it printed and
    stored. Read-only."""
    from tests.real_local_run import LocalRun, make_real_local_run

    return LocalRun(shared_build(tmp_path_factory, "real_local_run", make_real_local_run))


@pytest.fixture(scope="session")
def main_server_bundle(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str | None]:
    """(model folder, predictor loader) of the main model server: the run's tiny bundle when the model package
    imports, else an echo fake (tests/serving/fake_predictor.py)."""
    from tests.serving.serving_harness import real_model_available

    if real_model_available():
        return request.getfixturevalue("tiny_bundle_dir"), None
    return tmp_path_factory.mktemp("fake_bundle"), "fake_predictor:load"


@pytest.fixture(scope="session")
def server(
    main_server_bundle: tuple[Path, str | None], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The main model server (tests/serving/conftest.py says what it runs), one per session for the serving tests
    and the reliability load test alike: a real server start costs ~10-16 CPU seconds. Tests must not change it."""
    from tests.serving.serving_harness import LIMITS_ENV, ServerProcess, free_port, use_xla_cache

    use_xla_cache(tmp_path_factory)
    model_dir, loader = main_server_bundle
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    env = dict(LIMITS_ENV)
    metrics_port = None
    if loader is None:
        metrics_port = free_port()
        env["MLSERVER_METRICS_PORT"] = str(metrics_port)
    server = ServerProcess(model_dir, log_path, predictor_loader=loader, env=env, via_stages_cli=loader is None,
                           metrics_port=metrics_port)  # fmt: skip
    with server.running() as process:
        yield process


# pytest.ini's --timeout (300 s) catches a hung test; real trainings and cluster runs get an hour unless they set
# their own with @pytest.mark.timeout.
LONG_TIMEOUT_S = 3600


# The order test modules run in. Under `-n 2 --dist loadscope --no-loadscope-reorder` (`make test`) pytest-xdist hands
# whole modules to the two workers in collection order, so the longest go first and the run does not end with one
# worker busy on a long module while the other has nothing left. The two that make the session's shared builds
# start at once, one per worker (the real local run is child processes, the tiny model trains in the worker), and the
# test that only reads the real local run goes last, when it is long made: run at the same time as its maker, it
# left the other worker waiting ~20 s. The modules that mostly wait (server timeouts and shutdowns, child processes
# of the local runner, fsync) alternate with ones that compute, so one worker computes while the other waits: left
# to the end they waited side by side, a core idle for most of the run's last minute. Modules not named keep their
# place after these. Only the order changes; a name that no longer exists fails tests/delivery/test_suite_settings.py.
RUN_FIRST = (
    "tests/local/test_local_end_to_end.py",  # makes `real_local_run`
    "tests/stages/test_cli_refusals.py",  # makes `tiny_training` (so `tiny_cli_training`)
    "tests/serving/test_bad_input.py",  # the first of MAIN_SERVER_MODULES, one unit of ~40 s
    "tests/stages/test_encoders_and_schedule.py",
    "tests/stages/test_distributed_training.py",
    "tests/stages/test_chain.py",  # makes `chain`, which several later modules read
    "tests/reliability/test_serving_fuzz.py",
    "tests/stages/test_incremental_data.py",
    "tests/serving/test_connections_and_shutdown.py",  # waits
    "tests/stages/test_beam_search.py",
    "tests/serving/test_limits_and_shutdown.py",  # waits
    "tests/stages/test_decoding_choice.py",
    "tests/reliability/test_pipeline_faults.py",  # waits
    "tests/stages/test_trigrams.py",
    "tests/local/test_local_state_records.py",  # waits
    "tests/stages/test_compiled_small_batches.py",
    "tests/local/test_local_faults.py",  # waits
    "tests/bench/test_bench_smoke.py",
    "tests/local/test_local_runner.py",  # waits
    "tests/stages/test_copy_bias.py",
    "tests/serving/test_http_edges.py",  # waits
    "tests/bench/test_decoding_variants.py",
    "tests/stages/test_export_registry.py",  # waits
    "tests/stages/test_tfjob_launcher.py",
    "tests/local/test_local_pachctl_212.py",  # waits
    "tests/stages/test_bad_input.py",
)
RUN_LAST = ("tests/reliability/test_secrets_in_logs.py",)  # reads `real_local_run`
# Modules that use the main model server (`server`, one per worker: a real start costs 10-20 CPU seconds) are one
# unit of work, so only one worker starts it. The server is not shared across workers: tests that count its metrics
# or watch its memory must see only their own worker's requests.
MAIN_SERVER_MODULES = (
    "tests/serving/test_bad_input.py",
    "tests/serving/test_predictions.py",
    "tests/serving/test_fuzz.py",
    "tests/serving/test_health.py",
    "tests/serving/test_observability.py",
    "tests/reliability/test_load.py",
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadscope` with MAIN_SERVER_MODULES as one unit of work (xdist's LoadScopeScheduling makes a unit of
    each module; `_split_scope` is the method its own LoadFileScheduling overrides to group differently)."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class MainServerModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "main server modules" if module in MAIN_SERVER_MODULES else super()._split_scope(nodeid)

    return MainServerModulesTogether(config, log)


def module_rank(nodeid: str) -> int:
    """Where a test's module goes in the run (RUN_FIRST, then the rest as collected, then RUN_LAST)."""
    module = nodeid.split("::", 1)[0]
    if module in RUN_LAST:
        return len(RUN_FIRST) + 1
    return RUN_FIRST.index(module) if module in RUN_FIRST else len(RUN_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: module_rank(item.nodeid))  # stable: a module's tests keep their order
    for item in items:
        if (item.get_closest_marker("slow") or item.get_closest_marker("cluster")) and not item.get_closest_marker(
            "timeout"
        ):
            item.add_marker(pytest.mark.timeout(LONG_TIMEOUT_S))


@pytest.fixture(autouse=True)
def main_thread_event_loop() -> Iterator[None]:
    """Give the main thread a current event loop when an earlier test left it without one.

    Pulumi's runtime (resource.py, `resource_output`) calls `asyncio.get_event_loop()`, which raises once any earlier
    test in the same process ran `asyncio.run()` (that leaves the loop unset). Run serially, the Pulumi tests came
    first; under pytest-xdist a worker runs test files in any order."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    yield

"""Data-parallel training over several processes: what each replica of a TFJob runs, and the same on one machine.

The Kubeflow training operator gives every replica of a distributed TFJob a `TF_CONFIG` environment variable
(kubeflow/training-operator v1.9.0 pkg/controller.v1/tensorflow/tensorflow.go genTFConfigJSONStr:
`{"cluster": {"worker": ["<job>-worker-0.<ns>.svc:2222", ...]}, "task": {"type": "worker", "index": i},
"environment": "cloud"}`), and none at all to a TFJob of one replica (util.go isDistributed). TensorFlow's
`MultiWorkerMirroredStrategy` reads it (tensorflow/python/distribute/cluster_resolver/tfconfig_cluster_resolver.py):
every worker holds the whole model, takes its share of each global batch and all-reduces the gradients, so N workers
train the same model as one, on the same global batch size and the same number of steps.

`stages train --workers N` runs exactly that as N processes on 127.0.0.1 with generated TF_CONFIGs: worker 0 (the
chief, as in the operator's default success policy) writes the output, the others only train.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from issue_titles.errors import StageError

TF_CONFIG_ENV = "TF_CONFIG"
# The training operator's port for TFJob replicas (pkg/apis/kubeflow.org/v1/tensorflow_types.go TFJobDefaultPort).
TFJOB_DEFAULT_PORT = 2222
LOCALHOST = "127.0.0.1"


def tf_config(hosts: Sequence[str], index: int) -> dict:
    """The TF_CONFIG of worker `index` among `hosts`, shaped as the training operator writes it."""
    if not 0 <= index < len(hosts):
        raise ValueError(f"worker index {index} outside 0..{len(hosts) - 1}")
    return {"cluster": {"worker": list(hosts)}, "task": {"type": "worker", "index": index}, "environment": "cloud"}


def free_ports(count: int, host: str = LOCALHOST) -> list[int]:
    """`count` distinct ports the kernel has free on `host` now (held together, so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def local_tf_configs(workers: int, ports: Sequence[int] | None = None) -> list[str]:
    """One TF_CONFIG (JSON) per local worker, all on 127.0.0.1."""
    ports = list(ports) if ports is not None else free_ports(workers)
    hosts = [f"{LOCALHOST}:{port}" for port in ports[:workers]]
    return [json.dumps(tf_config(hosts, index)) for index in range(workers)]


@dataclass(frozen=True)
class Replica:
    """Which worker this process is, of how many (1 of 1 without a TF_CONFIG)."""

    workers: int = 1
    index: int = 0

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    @property
    def distributed(self) -> bool:
        return self.workers > 1


def replica_from_env(env: Mapping[str, str] = os.environ) -> Replica:
    """This process's place in the cluster, from TF_CONFIG; a malformed one is refused by name."""
    raw = env.get(TF_CONFIG_ENV, "").strip()
    if not raw:
        return Replica()
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise StageError(f"{TF_CONFIG_ENV} is not a worker cluster spec ({type(error).__name__}: {error})") from None
    if kind != "worker" or set(config["cluster"]) - {"worker"}:
        raise StageError(
            f"{TF_CONFIG_ENV}: only `worker` replicas are supported (MultiWorkerMirroredStrategy), "
            f"got task type {kind!r} in cluster {sorted(config['cluster'])}"
        )
    if not isinstance(workers, list) or not 0 <= index < len(workers):
        raise StageError(f"{TF_CONFIG_ENV}: task index {index} is not among {len(workers)} workers")
    return Replica(workers=len(workers), index=index)


@contextlib.contextmanager
def training_scope(replica: Replica) -> Iterator[object | None]:
    """The strategy scope the model and its optimizer are built in: MultiWorkerMirroredStrategy across the TF_CONFIG
    cluster, or nothing (the default strategy) for a single worker."""
    if not replica.distributed:
        yield None
        return
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        yield strategy


def loss_for_replicas(loss):
    """`loss` as each worker must report it under a multi-worker strategy.

    Keras divides a `keras.losses.Loss`'s mean by the number of replicas (losses/loss.py
    `scale_loss_for_distribution`), so that the optimizer's all-reduce *sum* of the workers' gradients is the
    gradient of the global mean, and multiplies the reported loss back. A plain function that already returns a
    scalar (the pointer-generator's masked mean) is left unscaled by Keras: its gradients would add up to N times the
    mean and the reported loss would be N times too large. Such a function is divided here, as Keras does a Loss."""
    import keras

    if isinstance(loss, keras.losses.Loss):
        return loss

    def per_replica(target, output):
        import tensorflow as tf

        return loss(target, output) / tf.distribute.get_strategy().num_replicas_in_sync

    per_replica.__name__ = getattr(loss, "__name__", "loss")
    return per_replica


def build_with_local_batch(model) -> None:
    """Let Keras build `model` for a multi-worker fit from this worker's own first batch.

    Keras 3 (keras/src/backend/tensorflow/trainer.py `_maybe_symbolic_build`, through 3.15) builds a model under a
    strategy by `strategy.reduce("MEAN", batch)` over the whole (inputs, targets) nest, which the collective
    all-reduce of MultiWorkerMirroredStrategy cannot take (it converts the dict of per-replica tensors to one Tensor
    and fails). The build only needs the batch's shapes and dtypes, so each worker uses its local values instead: no
    collective, nothing else changes."""
    import tensorflow as tf
    from keras import tree

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                batch = next(batches)
                data_batch = tree.map_structure(
                    lambda value: (
                        self.distribute_strategy.experimental_local_results(value)[0]
                        if isinstance(value, tf.distribute.DistributedValues)
                        else value
                    ),
                    batch,
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build.__get__(model)
    _reduce_scalars_across_workers()


_PATCHED = "_scalars_across_workers"  # marks Keras' reduce_per_replica as replaced, so it is replaced once


def _reduce_scalars_across_workers() -> None:
    """Keras 3 (trainer.py `reduce_per_replica`, through 3.15) averages each step's outputs over a multi-worker
    strategy with `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalar losses and metrics a step
    returns ("Invalid reduction dimension 0 for input with 0 dimensions"). Scalars are averaged over the workers
    instead; anything with a batch axis keeps Keras' own reduction. Only the reported numbers go through here: the
    gradients are all-reduced by the optimizer (keras/src/backend/tensorflow/optimizer.py)."""
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, _PATCHED, False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean"):
            from keras import tree

            def reduce(value):
                local = value.values[0] if trainer._is_per_replica_instance(value) else value
                if getattr(getattr(local, "shape", None), "rank", None) == 0:
                    # A SUM over the workers: MEAN of a worker's plain tensor comes back as the sum (one local
                    # replica each), so the mean is taken here.
                    return strategy.reduce("SUM", value, axis=None) / strategy.num_replicas_in_sync
                return original(value, strategy, reduction)

            return tree.map_structure(reduce, values)
        return original(values, strategy, reduction)

    setattr(reduce_per_replica, _PATCHED, True)
    trainer.reduce_per_replica = reduce_per_replica


def run_local_workers(
    argv: Sequence[str], workers: int, env: Mapping[str, str] | None = None, ports: Sequence[int] | None = None
) -> None:
    """Run `stages <argv>` as `workers` processes on 127.0.0.1, each with its own TF_CONFIG, and wait for all.

    The chief's output goes to this process's stdout/stderr; the others' stdout is dropped (they write nothing) and
    their stderr kept. If one fails, the rest are stopped (a collective would wait for it forever) and the failure
    names the worker and its exit code."""
    base = dict(os.environ if env is None else env)
    configs = local_tf_configs(workers, ports)
    processes: list[subprocess.Popen] = []
    try:
        for index, config in enumerate(configs):
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "issue_titles.cli", *argv],
                    env=base | {TF_CONFIG_ENV: config},
                    stdout=None if index == 0 else subprocess.DEVNULL,
                )
            )
        failed: tuple[int, int] | None = None
        while failed is None and any(p.poll() is None for p in processes):
            for index, process in enumerate(processes):
                if process.poll() not in (None, 0):
                    failed = (index, process.returncode)
                    break
            time.sleep(0.2)
        if failed is None:
            failed = next(((i, p.returncode) for i, p in enumerate(processes) if p.returncode), None)
        if failed is not None:
            index, code = failed
            error = StageError(f"training worker {index} of {workers} exited with code {code}")
            error.exit_code = code if 0 < code < 128 else 1
            raise error
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

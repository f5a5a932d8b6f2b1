"""`stages train`: fit the chosen architecture on pre_process's arrays, keep the best epoch by validation loss.

With weight averaging (the pointer-generator's default) the saved weights are instead an exponential moving
average of the weights over the last training steps (Polyak averaging, Keras' `use_ema`): averaged over the last few
hundred steps of a decaying learning rate, they generalise better than the last step's weights alone. Measured on the
full data (stages/README.md, variants table): held-out repositories +0.003 ROUGE-L overall, +0.001 to +0.006 on each
of the six, at no training cost. A worse epoch still stops training after `patience`, but the average is not rolled
back.
"""

import csv
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import keras
import numpy as np

from issue_titles.atomic import atomic_output_dir
from issue_titles.contract import BODY_VOCAB, MODEL_FORMAT, MODEL_INFO, PREPROCESS, TITLE_VOCAB, WEIGHTS_FILE
from issue_titles.distributed import build_with_local_batch, loss_for_replicas, replica_from_env, training_scope
from issue_titles.errors import StageError
from issue_titles.jsonio import load_array, read_json, read_vocabulary, write_json
from issue_titles.limits import TRAINING_RANGES
from issue_titles.model_config import POINTER_GENERATOR, TUTORIAL, ModelConfig, resolve_architecture
from issue_titles.models import build_model
from issue_titles.text import trigram_settings

# Per-architecture defaults; the CLI flags override them. The tutorial's are the tutorial's own settings.
ARCHITECTURE_DEFAULTS: dict[str, dict] = {
    TUTORIAL: {
        "epochs": 7, "batch_size": 1200, "learning_rate": 0.001,
        "embedding_dim": 300, "hidden_dim": 300, "dropout": 0.0, "patience": None,
        "encoder": "bigru", "schedule": "constant", "label_smoothing": 0.0, "average_steps": 0, "word_dropout": 0.0,
    },
    POINTER_GENERATOR: {
        "epochs": 4, "batch_size": 128, "learning_rate": 0.002,
        "embedding_dim": 128, "hidden_dim": 256, "dropout": 0.3, "patience": 2,
        "encoder": "bigru", "schedule": "cosine", "label_smoothing": 0.1, "average_steps": 500, "word_dropout": 0.0,
    },
}  # fmt: skip


SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "float32", "mixed")  # auto: mixed float16 for the pointer-generator when a GPU is visible
COMPILE_PAYS_OFF = 100_000  # rows x epochs from which XLA + unrolled GRUs (pointer_generator) repay their compile


def dtype_policy(settings: "ResolvedTrainSettings", gpus: int) -> str:
    """The Keras dtype policy to train with. On a GPU, float16 compute roughly halves the GRU and softmax time (tensor
    cores) while the weights, the attention and the output probabilities stay float32 (see models.py); on a CPU it
    only adds casts, so `auto` keeps float32 there. The tutorial architecture keeps the tutorial's float32."""
    on_gpu = settings.precision == "auto" and gpus and settings.architecture == POINTER_GENERATOR
    if settings.precision == "mixed" or on_gpu:
        return "mixed_float16"
    return "float32"


def compiles_with_xla(settings: "ResolvedTrainSettings", train_rows: int, distributed: bool = False) -> bool:
    """XLA with unrolled GRUs: ~15% faster per step, but compiling takes minutes; worth it only for long trainings.
    Never with several workers: XLA has no kernel for MultiWorkerMirroredStrategy's collectives (CollectiveGatherV2
    on XLA_CPU_JIT, measured with TensorFlow 2.20), so the step would not compile."""
    return (
        settings.architecture == POINTER_GENERATOR
        and train_rows * settings.epochs >= COMPILE_PAYS_OFF
        and not distributed
    )


def planned_steps(settings: "ResolvedTrainSettings", train_rows: int) -> int:
    """Optimizer steps of a full training: epochs x batches of the rows left after the validation split."""
    return settings.epochs * math.ceil(train_rows * (1 - settings.validation_split) / settings.batch_size)


def average_momentum(settings: "ResolvedTrainSettings", train_rows: int) -> float:
    """The moving average's momentum per step, 1 - 1/window, or 0 (no averaging). The window is `average_steps`, but
    at most a third of the planned steps: an average over most of a short training would hold its untrained start.
    The full data's 1,728 steps average over 500 (momentum 0.998); the demo's ~340 over ~110."""
    window = min(settings.average_steps, planned_steps(settings, train_rows) / 3)
    return 1.0 - 1.0 / window if window > 1 else 0.0


def learning_rate_schedule(settings: "ResolvedTrainSettings", train_rows: int):
    """`constant`, or `cosine`: a short linear warm-up, then cosine decay to zero at the last planned step. With
    the few epochs a CPU budget allows, ending at a small step size gives a clearly lower loss than stopping at a
    large one."""
    if settings.schedule == "constant":
        return settings.learning_rate
    steps = planned_steps(settings, train_rows)
    warmup = min(200, steps // 10)
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else settings.learning_rate,
        decay_steps=max(1, steps - warmup),
        warmup_target=settings.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


SIZE_KNOBS = ("epochs", "batch_size", "embedding_dim", "hidden_dim")  # ranged by issue_titles.limits


def _in_range(knob: str, value: int) -> bool:
    least, most = TRAINING_RANGES[knob]
    return least <= value and (most is None or value <= most)


@dataclass(frozen=True)
class TrainSettings:
    """None means: the architecture's default (ARCHITECTURE_DEFAULTS)."""

    architecture: str = "default"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    embedding_dim: int | None = None
    hidden_dim: int | None = None
    dropout: float | None = None
    patience: int | None = None
    encoder: str | None = None
    schedule: str | None = None
    label_smoothing: float | None = None
    average_steps: int | None = None  # the weights' moving average spans about this many steps; 0: the best epoch's
    # In training a body word enters the encoder as [UNK] with this probability (its trigrams and copy id stay), so the
    # encoder learns to read a word it does not know from its spelling, as it must on an unseen repository.
    word_dropout: float | None = None
    precision: str = "auto"
    validation_split: float = 0.12
    max_minutes: float | None = None
    seed: int = 42
    verbose: int = 2

    def resolved(self) -> "ResolvedTrainSettings":
        """Fill every None with the architecture's default and check the ranges."""
        try:
            architecture = resolve_architecture(self.architecture)
        except ValueError as error:
            raise StageError(str(error)) from None
        defaults = ARCHITECTURE_DEFAULTS[architecture]
        given = {field.name: getattr(self, field.name) for field in fields(self)}
        filled = ResolvedTrainSettings(
            **given
            | {"architecture": architecture}
            | {key: value for key, value in defaults.items() if given[key] is None}
        )
        checks = {
            **{f"--{knob.replace('_', '-')}": _in_range(knob, getattr(filled, knob)) for knob in SIZE_KNOBS},
            "--learning-rate": filled.learning_rate > 0 and math.isfinite(filled.learning_rate),
            "--dropout": 0.0 <= filled.dropout < 1.0,
            "--validation-split": 0.0 < filled.validation_split < 1.0,
            "--encoder": filled.encoder in ("bigru", "transformer"),
            "--schedule": filled.schedule in SCHEDULES,
            "--precision": filled.precision in PRECISIONS
            and (filled.precision != "mixed" or architecture == POINTER_GENERATOR),
            "--label-smoothing": 0.0 <= filled.label_smoothing < 1.0
            and (filled.label_smoothing == 0.0 or architecture == POINTER_GENERATOR),
            "--average-steps": filled.average_steps >= 0,
            "--word-dropout": 0.0 <= filled.word_dropout < 1.0
            and (filled.word_dropout == 0.0 or architecture == POINTER_GENERATOR),
        }
        for flag, ok in checks.items():
            if not ok:
                raise StageError(f"{flag} is out of range: {getattr(filled, flag[2:].replace('-', '_'))}")
        return filled


@dataclass(frozen=True, kw_only=True)
class ResolvedTrainSettings(TrainSettings):
    """TrainSettings with the architecture's defaults filled in (TrainSettings.resolved): what training reads, so
    the settings that every architecture has are never None here. `patience` stays None where the architecture
    has none (the tutorial), as does `max_minutes` when no limit is set."""

    epochs: int
    batch_size: int
    learning_rate: float
    embedding_dim: int
    hidden_dim: int
    dropout: float
    encoder: str
    schedule: str
    label_smoothing: float
    average_steps: int
    word_dropout: float


def load_training_data(input_dir: Path) -> tuple[dict, list[str], list[str]]:
    """pre_process output -> (arrays by name, body vocabulary, title vocabulary), with consistency checks."""
    input_dir = Path(input_dir)
    summary = read_json(input_dir / PREPROCESS)
    body_vocab = read_vocabulary(input_dir / BODY_VOCAB)
    title_vocab = read_vocabulary(input_dir / TITLE_VOCAB)
    arrays = {
        name: load_array(input_dir / f"{name}.npy")
        for name in ("train_body", "train_title", "train_body_copy", "train_title_copy")
    }
    rows = arrays["train_body"].shape[0]
    for name, array in arrays.items():
        if array.ndim != 2 or array.shape[0] != rows or not np.issubdtype(array.dtype, np.integer):
            raise StageError(
                f"expected a 2-D integer array with {rows} rows, got {array.dtype} {array.shape}",
                path=input_dir / f"{name}.npy",
            )
    try:
        per_token, buckets = trigram_settings(summary)  # 0 also for an output written before trigrams existed
    except ValueError as error:
        raise StageError(str(error), path=input_dir / "preprocess.json") from None
    summary = summary | {"trigrams_per_token": per_token, "trigram_buckets": buckets}
    if per_token:
        grams = load_array(input_dir / "train_body_grams.npy")
        expected = (rows, summary.get("body_length"), per_token)
        if grams.shape != expected or not np.issubdtype(grams.dtype, np.integer):
            raise StageError(f"expected an integer array of shape {expected}, got {grams.dtype} {grams.shape}",
                             path=input_dir / "train_body_grams.npy")  # fmt: skip
        if grams.size and not 0 <= int(grams.min()) <= int(grams.max()) < buckets:
            raise StageError(f"trigram ids must lie in 0..{buckets - 1} (trigram_buckets in preprocess.json)",
                             path=input_dir / "train_body_grams.npy")  # fmt: skip
        arrays["train_body_grams"] = grams
    if arrays["train_body"].shape[1] != summary.get("body_length") or arrays["train_title"].shape[1] != summary.get(
        "title_length"
    ):
        raise StageError("array lengths do not match preprocess.json", path=input_dir / "preprocess.json")
    if rows < 2:
        raise StageError(f"need at least 2 training rows, got {rows}", path=input_dir / "train_body.npy")
    return arrays | {"summary": summary}, body_vocab, title_vocab


def training_inputs(arrays: dict, architecture: str) -> tuple[dict, np.ndarray]:
    """(x, y) for keras fit: teacher forcing, the decoder reads title[:-1] and predicts title[1:]."""
    x = {"body": arrays["train_body"], "decoder_input": arrays["train_title"][:, :-1]}
    if architecture == POINTER_GENERATOR:
        target = arrays["train_title_copy"][:, 1:]
        if "train_body_grams" in arrays:
            x["body_grams"] = arrays["train_body_grams"]
        return x | {"body_copy": arrays["train_body_copy"], "target": target}, target
    return x, arrays["train_title"][:, 1:]


def run_train(
    input_dir: Path,
    output_dir: Path,
    settings: TrainSettings = TrainSettings(),
    initial_weights: Path | None = None,
    extra_info: dict | None = None,
    extra_files: dict[str, Path] | None = None,
) -> dict:
    """Train and write the model folder. `initial_weights` warm-starts from a former model's weights (ValueError when
    their shapes do not fit this model: issue_titles.incremental falls back to a full training); `extra_info` and
    `extra_files` (name -> source) are added to model.json and the output (the update's lineage)."""
    requested_architecture = settings.architecture
    settings = settings.resolved()
    arrays, body_vocab, title_vocab = load_training_data(input_dir)
    summary = arrays.pop("summary")
    config = ModelConfig(
        architecture=settings.architecture,
        body_vocab_size=len(body_vocab),
        title_vocab_size=len(title_vocab),
        body_length=int(summary["body_length"]),
        title_length=int(summary["title_length"]),
        embedding_dim=settings.embedding_dim,
        hidden_dim=settings.hidden_dim,
        dropout=settings.dropout,
        encoder=settings.encoder,
        trigrams_per_token=summary["trigrams_per_token"],
        trigram_buckets=summary["trigram_buckets"],
    )
    keras.utils.set_random_seed(settings.seed)
    train_rows = int(arrays["train_body"].shape[0])
    # A TF_CONFIG (a TFJob replica, or `stages train --workers N`): data-parallel under MultiWorkerMirroredStrategy,
    # the chief writes the output (distributed.py).
    replica = replica_from_env()
    compiled = compiles_with_xla(settings, train_rows, replica.distributed)
    momentum = average_momentum(settings, train_rows)
    import tensorflow as tf

    policy = dtype_policy(settings, gpus=len(tf.config.list_physical_devices("GPU")))
    if replica.distributed and settings.max_minutes is not None:
        raise StageError("--max-minutes cannot stop several workers at the same epoch; leave it out with --workers")
    with training_scope(replica):  # the model and optimizer variables, mirrored on every worker
        keras.mixed_precision.set_dtype_policy(policy)
        try:
            model = build_model(config, unroll=compiled, label_smoothing=settings.label_smoothing,
                                word_dropout=settings.word_dropout)  # fmt: skip
        finally:
            keras.mixed_precision.set_dtype_policy(
                "float32"
            )  # the layers keep theirs; later loads build float32 models
        if initial_weights is not None:
            model.load_weights(initial_weights)  # keras raises ValueError on a shape mismatch
        model.compile(
            optimizer=keras.optimizers.Nadam(
                learning_rate=learning_rate_schedule(settings, train_rows),
                clipnorm=None if settings.architecture == TUTORIAL else 5.0,  # the tutorial did not clip
                # fit() ends by writing the moving average into the model (Optimizer.finalize_variable_values).
                use_ema=bool(momentum),
                ema_momentum=momentum or 0.99,
            ),
            loss=loss_for_replicas(model.training_loss()) if replica.distributed else model.training_loss(),
            jit_compile=True if compiled else "auto",
        )
        # The optimizer's slots (and moving averages) now, not inside fit()'s first step: without a strategy Keras
        # builds it while tracing that step, and a tf.function that creates variables traces twice; this saves one
        # trace of the whole training step (seconds per training, about a fifth of a small one's time).
        model.optimizer.build(model.trainable_variables)
        if replica.distributed:
            build_with_local_batch(model)
    x, y = training_inputs(arrays, settings.architecture)
    # With averaging the model ends fit() holding the average; keeping a raw epoch's weights would only undo it.
    keeper = BestEpoch(settings.patience, settings.max_minutes, keep_weights=not momentum)
    started = time.monotonic()
    # Progress on stderr (stdout is the JSON report) and TensorBoard scalars, copied into the output at the end.
    from issue_titles.progress import TENSORBOARD_DIR, training_callbacks

    events = Path(tempfile.mkdtemp(prefix="issue-titles-tensorboard-"))
    try:  # the event files' scratch folder goes whatever happens (a failure, divergence, a non-chief worker)
        history = model.fit(
            x, y, epochs=settings.epochs, batch_size=settings.batch_size,
            validation_split=settings.validation_split, verbose=0,
            callbacks=[keeper, *training_callbacks(events / "train", _settings_text(settings, train_rows),
                                                   settings.verbose)],
        )  # fmt: skip
        seconds = time.monotonic() - started
        if keeper.diverged is not None:
            epoch, loss = keeper.diverged
            raise StageError(f"training diverged: the loss became {loss} in epoch {epoch + 1}, so nothing was "
                             f"saved; try a lower --learning-rate (it was {settings.learning_rate:g})")  # fmt: skip
        keeper.restore(model)
        losses = history.history
        training = {
            "epochs_requested": settings.epochs,
            "epochs_run": len(losses["loss"]),
            "best_epoch": keeper.best_epoch + 1,
            "best_val_loss": keeper.best,
            "first_loss": float(losses["loss"][0]),
            "final_loss": float(losses["loss"][-1]),
            "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate,
            "schedule": settings.schedule,
            "encoder": settings.encoder,
            "dropout": settings.dropout,
            "label_smoothing": settings.label_smoothing,
            "word_dropout": settings.word_dropout,
            "trigrams_per_token": config.trigrams_per_token,
            "average_steps": settings.average_steps,
            "average_momentum": round(momentum, 6),
            "saved_weights": "moving average" if momentum else f"epoch {keeper.best_epoch + 1}",
            "precision": policy,
            "xla_unrolled": compiled,
            "validation_split": settings.validation_split,
            "patience": settings.patience,
            "seed": settings.seed,
            "train_rows": int(arrays["train_body"].shape[0]),
            "seconds": round(seconds, 1),
            "workers": replica.workers,
        }
        info = {
            "format": MODEL_FORMAT,
            "architecture": settings.architecture,
            "requested_architecture": requested_architecture,
            "config": config.as_dict(),
            "weights": WEIGHTS_FILE,
            "training": training,
        } | (extra_info or {})
        if not replica.is_chief:  # the chief writes the one output; the other workers' weights are the same
            return info
        with atomic_output_dir(output_dir, step="train", inputs=[input_dir]) as staging:
            model.save_weights(staging / WEIGHTS_FILE)
            write_json(staging / MODEL_INFO, info)
            for name in (BODY_VOCAB, TITLE_VOCAB, PREPROCESS):
                shutil.copyfile(Path(input_dir) / name, staging / name)
            for name, source in (extra_files or {}).items():
                shutil.copyfile(source, staging / name)
            _write_history(staging / "history.csv", losses, keeper.epoch_seconds)
            _plot_losses(staging / "loss.png", losses, settings.architecture)
            shutil.copytree(events, staging / TENSORBOARD_DIR)
        return info
    finally:
        shutil.rmtree(events, ignore_errors=True)


class BestEpoch(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest validation loss (unless told not to: `keep_weights`); stops
    after `patience` worse epochs."""

    def __init__(self, patience: int | None, max_minutes: float | None, keep_weights: bool = True) -> None:
        super().__init__()
        self.patience = patience
        self.keep_weights = keep_weights
        self.max_minutes = max_minutes
        self.best = float("inf")
        self.best_epoch = 0
        self.best_weights: list | None = None
        self.epoch_seconds: list[float] = []
        self.diverged: tuple[int, float] | None = None  # (epoch, loss) once the training loss is NaN or infinite
        self._started = self._epoch_started = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch_started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None) -> None:
        now = time.monotonic()
        self.epoch_seconds.append(round(now - self._epoch_started, 2))
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            self.diverged = (epoch, loss)
            self.model.stop_training = True
            return
        value = float((logs or {}).get("val_loss", np.inf))
        if value < self.best:
            self.best, self.best_epoch = value, epoch
            if self.keep_weights:
                self.best_weights = self.model.get_weights()
        elif self.patience is not None and epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True
        if self.max_minutes is not None and now - self._started > self.max_minutes * 60:
            self.model.stop_training = True

    def restore(self, model) -> None:
        if self.best_weights is not None:
            model.set_weights(self.best_weights)


def _settings_text(settings: ResolvedTrainSettings, train_rows: int) -> str:
    """The run's settings as a Markdown table, for TensorBoard's text tab (comparing runs side by side)."""
    rows = {"train_rows": train_rows, **{key: value for key, value in vars(settings).items() if key != "verbose"}}
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {key} | {value} |" for key, value in rows.items())


def _write_history(path: Path, losses: dict, seconds: list[float]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "loss", "val_loss", "seconds"])
        for epoch, loss in enumerate(losses["loss"]):
            val = losses.get("val_loss", [None] * len(losses["loss"]))[epoch]
            writer.writerow([epoch + 1, f"{loss:.6f}", "" if val is None else f"{val:.6f}", seconds[epoch]])


def _plot_losses(path: Path, losses: dict, architecture: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4))
    epochs = range(1, len(losses["loss"]) + 1)
    axes.plot(epochs, losses["loss"], marker="o", label="train")
    if "val_loss" in losses:
        axes.plot(epochs, losses["val_loss"], marker="o", label="validation")
    axes.set(xlabel="epoch", ylabel="loss", title=f"{architecture}: loss per epoch")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)

"""Progress on stderr while a stage works, and TensorBoard event files for training and the decoding choice.

stdout stays the step's JSON report: every line here goes to stderr. Attached to a terminal, training shows a tqdm
bar per epoch (steps, loss, ETA) and decoding a bar over the rows; in a log (Pachyderm, CI, a pipe) training
writes one line per epoch and decoding one line per tenth of the rows, so a log stays readable.

TensorBoard files are written with TensorFlow's own `tf.summary` writer (no extra dependency) and read back in
the tests with tensorboard's `EventAccumulator`: `tensorboard --logdir <train output>` shows them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import keras

TENSORBOARD_DIR = "tensorboard"
DECODE_CHUNK = 512  # TitlePredictor.predict's own chunk size: the same model calls, one bar step each


def interactive(stream: TextIO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def current_learning_rate(model: Any) -> float | None:
    """The optimizer's learning rate now (a schedule evaluated at the current step), or None."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    try:
        rate = optimizer.learning_rate
        if callable(rate):
            rate = rate(optimizer.iterations)
        return float(keras.ops.convert_to_numpy(rate))
    except Exception:
        return None


class EpochProgress(keras.callbacks.Callback):
    """A tqdm bar per epoch on a terminal (steps, loss, ETA); one line per epoch otherwise. Always on stderr."""

    def __init__(self, stream: TextIO | None = None, bar: bool | None = None) -> None:
        super().__init__()
        self.stream = sys.stderr if stream is None else stream
        self.bar = interactive(self.stream) if bar is None else bar
        self._tqdm: Any = None
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.monotonic()
        if self.bar:
            from tqdm.auto import tqdm

            epochs = self.params.get("epochs", "?")
            self._tqdm = tqdm(total=self.params.get("steps"), desc=f"epoch {epoch + 1}/{epochs}", unit="step",
                              file=self.stream, leave=True, dynamic_ncols=True)  # fmt: skip

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._tqdm is not None:
            self._tqdm.update(1)
            if logs and "loss" in logs:
                self._tqdm.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        seconds = time.monotonic() - self._started
        parts = [f"{name} {float(logs[name]):.4f}" for name in ("loss", "val_loss") if name in logs]
        rate = current_learning_rate(self.model)
        if rate is not None:
            parts.append(f"lr {rate:.3g}")
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(", ".join(parts))
            self._tqdm.close()
            self._tqdm = None
            return
        epochs = self.params.get("epochs", "?")
        steps = self.params.get("steps")
        per_step = f", {seconds / steps * 1000:.0f} ms/step" if steps else ""
        print(f"epoch {epoch + 1}/{epochs}: {', '.join(parts)} ({_clock(seconds)}{per_step})",
              file=self.stream, flush=True)  # fmt: skip

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None


class TensorBoardScalars(keras.callbacks.Callback):
    """Per epoch: loss, val_loss and the learning rate, as TensorBoard scalars in `log_dir` (written as it trains,
    so `tensorboard --logdir` follows a running training too)."""

    def __init__(self, log_dir: Path, settings_text: str = "") -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self.settings_text = settings_text
        self._writer: Any = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(str(self.log_dir))
        if self.settings_text:
            with self._writer.as_default():
                tf.summary.text("training/settings", self.settings_text, step=0)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import tensorflow as tf

        logs = logs or {}
        with self._writer.as_default():
            for name in ("loss", "val_loss"):
                if name in logs:
                    tf.summary.scalar(f"epoch/{name}", float(logs[name]), step=epoch + 1)
            rate = current_learning_rate(self.model)
            if rate is not None:
                tf.summary.scalar("epoch/learning_rate", rate, step=epoch + 1)
        self._writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def training_callbacks(
    log_dir: Path | None, settings_text: str = "", verbose: int = 1
) -> list[keras.callbacks.Callback]:
    """What `stages train` adds to fit(): progress on stderr (unless `verbose` is 0) and the TensorBoard writer."""
    callbacks: list[keras.callbacks.Callback] = []
    if verbose:
        callbacks.append(EpochProgress())
    if log_dir is not None:
        callbacks.append(TensorBoardScalars(log_dir, settings_text))
    return callbacks


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A Markdown table (TensorBoard renders text summaries as Markdown)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_decoding_choice(log_dir: Path, choice: dict) -> None:
    """The decoding choice (every length penalty / copy bias pair and its ROUGE-L, the chosen one first) as a
    TensorBoard text summary, beside the training scalars."""
    import tensorflow as tf

    scores = list(choice.get("scores") or [])
    chosen = (choice.get("length_penalty"), choice.get("copy_bias"))
    rows = [score | {"chosen": "yes" if (score.get("length_penalty"), score.get("copy_bias")) == chosen else ""}
            for score in scores]  # fmt: skip
    header = f"decoding chosen on: {choice.get('chosen_on', 'n/a')}"
    if choice.get("why"):
        header += f" ({choice['why']})"
    text = header + (
        "\n\n" + markdown_table(rows, ["length_penalty", "copy_bias", "rouge_l", "chosen"]) if rows else ""
    )
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        tf.summary.text("decoding/choice", text, step=0)
    writer.close()


def predict_with_progress(
    predict: Callable[[list[str]], list[str]], bodies: Sequence[str], label: str, stream: TextIO | None = None
) -> list[str]:
    """`predict(bodies)` in chunks of DECODE_CHUNK, with a bar over the rows (terminal) or a line per ~10% (log)."""
    stream = sys.stderr if stream is None else stream
    bodies = list(bodies)
    total = len(bodies)
    if total <= DECODE_CHUNK:
        return list(predict(bodies))
    titles: list[str] = []
    started = time.monotonic()
    if interactive(stream):
        from tqdm.auto import tqdm

        with tqdm(total=total, desc=f"decoding {label}", unit="row", file=stream, dynamic_ncols=True) as bar:
            for start in range(0, total, DECODE_CHUNK):
                titles.extend(predict(bodies[start : start + DECODE_CHUNK]))
                bar.update(min(DECODE_CHUNK, total - start))
        return titles
    next_report = 0.1
    for start in range(0, total, DECODE_CHUNK):
        titles.extend(predict(bodies[start : start + DECODE_CHUNK]))
        done = len(titles) / total
        if done >= next_report or len(titles) == total:
            elapsed = time.monotonic() - started
            eta = elapsed / done - elapsed
            print(f"decoding {label}: {len(titles)}/{total} rows ({done:.0%}), {_clock(elapsed)} elapsed, "
                  f"ETA {_clock(eta)}", file=stream, flush=True)  # fmt: skip
            next_report = done + 0.1
    return titles

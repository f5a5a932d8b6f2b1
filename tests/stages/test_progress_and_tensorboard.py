"""Training and decoding progress on stderr (stdout stays the JSON report), and TensorBoard event files that
tensorboard's own reader opens: loss, val_loss and learning rate per epoch; the decoding choice as text."""

import io
import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from issue_titles.progress import EpochProgress, predict_with_progress


def events(folder) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


# The run's tiny training and its bundle (tests/conftest.py `tiny_training`, `tiny_bundle_dir`): the real `stages
# train` and `stages build` code with a validation split, as every training writes its event files; what is asserted
# (one scalar per epoch, the decoding choice as text) does not depend on the model's size or data.


def test_train_output_has_tensorboard_scalars_per_epoch(tiny_training) -> None:
    train = tiny_training / "train"
    epochs = json.loads((train / "model.json").read_text())["training"]["epochs_run"]

    accumulator = events(train / "tensorboard" / "train")

    tags = set(accumulator.Tags()["tensors"]) | set(accumulator.Tags()["scalars"])
    assert {"epoch/loss", "epoch/val_loss", "epoch/learning_rate", "training/settings"} <= tags
    loss = accumulator.Tensors("epoch/loss")
    assert [event.step for event in loss] == list(range(1, epochs + 1))
    history = (train / "history.csv").read_text().splitlines()[1:]
    first_loss = float(history[0].split(",")[1])
    assert abs(float(make_ndarray(loss[0].tensor_proto)) - first_loss) < 1e-4
    rates = [float(make_ndarray(event.tensor_proto)) for event in accumulator.Tensors("epoch/learning_rate")]
    assert len(rates) == epochs and rates[0] > 0 and all(rate >= 0 for rate in rates)


def test_build_bundle_has_the_decoding_choice_as_text(tiny_bundle_dir) -> None:
    accumulator = events(tiny_bundle_dir / "tensorboard" / "decoding")

    (event,) = accumulator.Tensors("decoding/choice")
    text = make_ndarray(event.tensor_proto).item().decode()
    assert text.startswith("decoding chosen on:")


def test_train_progress_goes_to_stderr_one_line_per_epoch_and_stdout_is_the_report(tiny_cli_training) -> None:
    """The run's one CLI training with file-descriptor-level capture (tests/conftest.py `tiny_cli_training`)."""
    out, err = ((tiny_cli_training / name).read_text() for name in ("stdout.txt", "stderr.txt"))

    assert (tiny_cli_training / "exit_code.txt").read_text() == "0", err
    assert json.loads(out)["epochs_run"] >= 1  # stdout holds the JSON report and nothing else
    epoch_lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == json.loads(out)["epochs_run"]
    assert "loss" in epoch_lines[0] and "val_loss" in epoch_lines[0] and "lr " in epoch_lines[0]


def test_epoch_progress_draws_a_bar_with_steps_loss_and_eta_on_a_terminal() -> None:
    stream = io.StringIO()
    progress = EpochProgress(stream=stream, bar=True)
    progress.set_params({"epochs": 3, "steps": 4})
    progress.on_epoch_begin(0)
    for step in range(4):
        progress.on_train_batch_end(step, {"loss": 2.5 - step * 0.1})
    progress.on_epoch_end(0, {"loss": 2.2, "val_loss": 2.4})

    drawn = stream.getvalue()
    assert "epoch 1/3" in drawn and "4/4" in drawn and "loss 2.2000" in drawn and "<" in drawn  # elapsed<ETA


def test_decoding_progress_reports_in_tenths_in_a_log() -> None:
    stream = io.StringIO()

    titles = predict_with_progress(lambda bodies: [body.upper() for body in bodies], ["a"] * 5000, "test.csv", stream)

    assert titles == ["A"] * 5000
    lines = stream.getvalue().splitlines()
    assert 5 <= len(lines) <= 11 and lines[-1].startswith("decoding test.csv: 5000/5000 rows (100%)")

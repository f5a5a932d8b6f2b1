"""Model artifacts: plain data that loads without running code, and a changed bundle is refused, naming the file.

tests/stages checks `TitlePredictor.load` against changed weights, a changed vocabulary and a missing file; here
the same protection is checked where it matters to an operator: the serving runtime and the real server, a
bundle whose provenance.json was removed or forged, and loading with every code-running deserializer disabled.
"""

import asyncio
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from issue_titles.errors import StageError, TamperedBundleError
from issue_titles.predictor import TitlePredictor
from issue_titles.provenance import PROVENANCE, sha256_file
from issue_titles.serving.limits import ServingLimits
from tests.serving.serving_harness import ServerProcess


def is_json(data: bytes) -> bool:
    json.loads(data.decode("utf-8"))
    return True


def is_tensorboard_events(data: bytes) -> bool:
    """TFRecord-framed `Event` protocol buffers (tf.summary's `events.out.tfevents.*.v2`), read by tensorboard's own
    reader: data, not code."""
    import tempfile

    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    with tempfile.NamedTemporaryFile(suffix=".v2") as handle:
        handle.write(data)
        handle.flush()
        return len(list(EventFileLoader(handle.name).Load())) > 0


PLAIN_FORMATS = {
    ".json": is_json,
    ".md": lambda data: bool(data.decode("utf-8")),  # MODEL_CARD.md
    ".v2": is_tensorboard_events,  # tensorboard/decoding/events.out.tfevents.*.v2
    ".h5": lambda data: data[:8] == b"\x89HDF\r\n\x1a\n",
    ".png": lambda data: data[:8] == b"\x89PNG\r\n\x1a\n",
    ".csv": lambda data: bool(data.decode("utf-8")),
    "": lambda data: bool(data.decode("utf-8")),  # Dockerfile
}


@pytest.fixture
def bundle(tiny_model: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle, free to be tampered with."""
    return Path(shutil.copytree(tiny_model, tmp_path / "bundle"))


def flip_byte_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def load_in_runtime(bundle: Path):
    """The MLServer runtime's own load(), in-process, as the server calls it."""
    from mlserver.settings import ModelSettings

    from issue_titles.serving.runtime import IssueTitleRuntime
    from issue_titles.serving.settings import model_settings_dict

    runtime = IssueTitleRuntime(ModelSettings(**model_settings_dict(str(bundle), ServingLimits())))
    try:
        return asyncio.run(runtime.load())
    finally:
        asyncio.run(runtime.unload())


def test_every_bundle_file_is_plain_data_and_none_is_a_pickle(tiny_model: Path) -> None:
    files = sorted(path for path in tiny_model.rglob("*") if path.is_file())

    assert {path.name for path in files} >= {"model.weights.h5", "model.json", "body_vocab.json", "title_vocab.json"}
    for path in files:
        data = path.read_bytes()
        assert path.suffix in PLAIN_FORMATS, f"unexpected kind of file in the bundle: {path.name}"
        assert PLAIN_FORMATS[path.suffix](data), f"{path.name} is not the plain format its name says"
        assert not data.startswith(b"\x80"), f"{path.name} starts like a pickle"


def test_the_bundle_loads_and_predicts_with_pickle_and_keras_deserialization_disabled(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    def refuse(*args, **kwargs):
        raise AssertionError("loading a bundle must not deserialize code")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (np, "load"),
                         (keras.models, "load_model"), (keras.saving, "load_model"),
                         (keras.saving, "deserialize_keras_object"),  # Keras' safe mode is never switched off:
                         (keras.config, "enable_unsafe_deserialization")]:  # fmt: skip
        monkeypatch.setattr(module, name, refuse)

    predictor = TitlePredictor.load_bundle(tiny_model)

    assert predictor.predict(["the parser crashes on empty input"])[0].strip()


@pytest.mark.parametrize("changed", ["model.weights.h5", "title_vocab.json", "body_vocab.json", "model.json"])
def test_the_serving_runtime_refuses_a_changed_file_and_names_it(bundle: Path, changed: str) -> None:
    flip_byte_in_the_middle(bundle / changed)

    with pytest.raises(TamperedBundleError) as refused:
        load_in_runtime(bundle)

    assert str(refused.value).startswith(f"{bundle / changed}: checksum mismatch: provenance.json records sha256")


def test_the_serving_runtime_refuses_a_bundle_whose_provenance_was_removed(bundle: Path) -> None:
    (bundle / PROVENANCE).unlink()
    flip_byte_in_the_middle(bundle / "model.weights.h5")

    with pytest.raises(
        TamperedBundleError, match=re.escape("provenance.json is missing, so the bundle's files cannot be verified")
    ):
        load_in_runtime(bundle)


@pytest.mark.parametrize("listed", ["../../../etc/hostname", "/etc/hostname", "a/../../x", ""])
def test_a_provenance_table_naming_files_outside_the_bundle_is_refused(bundle: Path, listed: str) -> None:
    record = json.loads((bundle / PROVENANCE).read_text())
    record["files"][listed] = "0" * 64
    (bundle / PROVENANCE).write_text(json.dumps(record))

    with pytest.raises(TamperedBundleError, match="which is not a file inside the bundle"):
        TitlePredictor.load_bundle(bundle)


def test_a_forged_model_description_cannot_name_code_to_run(bundle: Path) -> None:
    """Even with provenance.json re-signed by the forger, model.json can only pick a built-in architecture."""
    info = json.loads((bundle / "model.json").read_text())
    info["config"]["architecture"] = "keras.layers.Lambda"
    info["config"]["function"] = "os.system('touch pwned')"
    (bundle / "model.json").write_text(json.dumps(info))
    record = json.loads((bundle / PROVENANCE).read_text())
    record["files"]["model.json"] = sha256_file(bundle / "model.json")
    (bundle / PROVENANCE).write_text(json.dumps(record))

    with pytest.raises(StageError, match=r"model\.json: cannot build the model described: unknown architecture"):
        TitlePredictor.load_bundle(bundle)
    assert not Path("pwned").exists()


def test_the_server_refuses_to_start_on_changed_weights_and_says_which_file(bundle: Path, tmp_path: Path) -> None:
    flip_byte_in_the_middle(bundle / "model.weights.h5")
    server = ServerProcess(bundle, tmp_path / "server.log", via_stages_cli=True).start()
    try:
        assert server.process is not None
        returncode = server.process.wait(timeout=120)
    finally:
        server.stop()

    assert returncode == 4, server.log()[-2000:]  # stages/README.md: 4 = bundle changed after build
    assert f"stages serve: error: {bundle / 'model.weights.h5'}: checksum mismatch" in server.log()
    assert "could not be loaded" not in server.log()  # refused before the server started

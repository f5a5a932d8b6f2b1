"""A serving bundle loads only as `stages build` wrote it: no unlisted file, no symlink, known format versions.

Each refusal is one line naming the file; a changed bundle exits 4, a bundle from another version of the code 2.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from issue_titles.errors import StageError, TamperedBundleError
from issue_titles.predictor import TitlePredictor
from issue_titles.provenance import BUNDLE_FORMAT, PROVENANCE, sha256_file
from tests.stages.conftest import run_stages


@pytest.fixture
def bundle(chain, tmp_path) -> Path:
    return Path(shutil.copytree(chain["build"], tmp_path / "bundle"))


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def resign(bundle: Path, name: str) -> None:
    """Record the changed file's new checksum, as anyone who can write the bundle can."""
    edit_json(bundle / PROVENANCE, lambda record: record["files"].__setitem__(name, sha256_file(bundle / name)))


def a_title_from(folder: Path) -> str:
    """`TitlePredictor.load_bundle(folder)`, every check a server's load makes, then one title decoded with it. On the
    plain graph (compiled_batch_limit=0), not the server's XLA decoder for small batches: the checks do not depend on
    it, and XLA's compile of a new model costs ~1-2 CPU s more per load (test_compiled_small_batches guards it)."""
    [title] = TitlePredictor.load_bundle(folder, compiled_batch_limit=0).predict(["the parser crashes on empty input"])
    return title


def test_build_records_the_bundle_format(bundle):
    assert json.loads((bundle / PROVENANCE).read_text())["bundle_format"] == BUNDLE_FORMAT


def test_an_unlisted_extra_file_is_refused(bundle):
    (bundle / "extra.py").write_text("print('hello')\n")

    with pytest.raises(TamperedBundleError) as refused:
        TitlePredictor.load_bundle(bundle)

    assert str(refused.value) == (
        f"{bundle / 'extra.py'}: is not listed in provenance.json; a bundle holds only the files `stages build` "
        "wrote (remove it, or rebuild the bundle)"
    )


def test_a_symlink_pointing_outside_the_bundle_is_refused_even_with_the_right_content(bundle, tmp_path):
    outside = tmp_path / "elsewhere" / "body_vocab.json"
    outside.parent.mkdir()
    shutil.move(bundle / "body_vocab.json", outside)
    (bundle / "body_vocab.json").symlink_to(outside)

    with pytest.raises(TamperedBundleError) as refused:
        TitlePredictor.load_bundle(bundle)

    assert str(refused.value) == (
        f"{bundle / 'body_vocab.json'}: is a symlink (to {outside}); a bundle holds only regular files, "
        "copy the file in instead"
    )


def test_a_symlinked_folder_inside_the_bundle_is_refused(bundle, tmp_path):
    (tmp_path / "outside").mkdir()
    (bundle / "more").symlink_to(tmp_path / "outside")

    with pytest.raises(TamperedBundleError, match=r"more: is a symlink \(to .*outside\); a bundle holds only"):
        TitlePredictor.load_bundle(bundle)


def test_the_bundle_folder_itself_may_be_a_symlink(bundle, tmp_path):
    (tmp_path / "current").symlink_to(bundle)

    assert a_title_from(tmp_path / "current")


def test_an_unknown_bundle_format_is_refused_with_one_line(bundle, tmp_path, capsys):
    edit_json(bundle / PROVENANCE, lambda record: record.__setitem__("bundle_format", 99))
    (tmp_path / "in.csv").write_text("body\nsomething broke\n")

    code = run_stages("predict", "--model", bundle, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv")

    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"stages predict: error: {bundle / PROVENANCE}: bundle format 99 is not one this code reads "
        f"({BUNDLE_FORMAT}); rebuild the bundle with this version's `stages build`, or serve it with the version that "
        "built it"
    )


def test_a_bundle_from_before_the_format_field_still_loads(bundle):
    """Bundles built before `bundle_format` was recorded are format 1, and had no output marker."""
    edit_json(bundle / PROVENANCE, lambda record: record.pop("bundle_format"))

    assert a_title_from(bundle)


def test_an_unknown_preprocessing_version_is_refused_with_one_line(bundle):
    edit_json(bundle / "preprocess.json", lambda summary: summary.__setitem__("standardization", "somebody/v7"))
    resign(bundle, "preprocess.json")

    with pytest.raises(StageError) as refused:
        TitlePredictor.load_bundle(bundle)

    assert str(refused.value) == (
        f"{bundle / 'preprocess.json'}: text was prepared with 'somebody/v7', this code prepares it with "
        "'issue_titles.text.standardize/v2'; the model would see different tokens: retrain with this version"
    )


def test_an_unknown_model_format_is_refused_with_one_line(bundle):
    edit_json(bundle / "model.json", lambda info: info.__setitem__("format", 2))
    resign(bundle, "model.json")

    with pytest.raises(StageError) as refused:
        TitlePredictor.load_bundle(bundle)

    assert str(refused.value) == (
        f"{bundle / 'model.json'}: model format 2 is not one this code reads (1); retrain with this version"
    )


def test_text_lengths_that_do_not_fit_the_model_are_refused_before_tensorflow_sees_them(bundle):
    edit_json(bundle / "preprocess.json", lambda summary: summary.__setitem__("body_length", 7))
    resign(bundle, "preprocess.json")

    with pytest.raises(StageError) as refused:
        TitlePredictor.load_bundle(bundle)

    assert str(refused.value).startswith(
        f"{bundle / 'preprocess.json'}: body_length 7 does not match the model's 40 (model.json)"
    )


def test_a_tampered_bundle_stops_serve_with_exit_4_before_the_server_starts(bundle, capsys):
    (bundle / "title_vocab.json").write_text((bundle / "title_vocab.json").read_text() + " ")

    code = run_stages("serve", "--model", bundle, "--port", "1")  # port 1: nothing may get as far as listening

    assert code == 4
    assert (
        capsys.readouterr()
        .err.strip()
        .startswith(f"stages serve: error: {bundle / 'title_vocab.json'}: checksum mismatch")
    )


def test_serve_refuses_a_tampered_bundle_before_importing_tensorflow(bundle):
    """The check needs no TensorFlow, so a refused bundle costs a fraction of a second, not a TensorFlow start-up."""
    (bundle / "title_vocab.json").write_text((bundle / "title_vocab.json").read_text() + " ")
    program = (
        "import sys\n"
        "from issue_titles.cli import main\n"
        f"code = main(['serve', '--model', {str(bundle)!r}, '--port', '1'])\n"
        "print(code, sorted({'tensorflow', 'keras'} & set(sys.modules)))\n"
    )

    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)

    assert result.stdout.split("\n")[0] == "4 []", result.stdout + result.stderr
    assert "checksum mismatch" in result.stderr


def test_a_fifo_in_the_bundle_is_refused(bundle):
    os.mkfifo(bundle / "pipe")

    with pytest.raises(TamperedBundleError, match=r"pipe: is not a regular file"):
        TitlePredictor.load_bundle(bundle)

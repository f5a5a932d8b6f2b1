"""--output: a step replaces only an empty folder or its own previous output, and never an input.

Every refusal is one line naming the path, exit 2, and changes nothing on disk.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from issue_titles import atomic
from issue_titles.atomic import MARKER
from tests.stages.conftest import run_stages

HEADER = "issue_url,issue_title,body\n"


def raw_folder(folder: Path, rows: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"https://x/{i},Fix bug {i},The body of issue {i} says it crashes\n" for i in range(rows))
    (folder / "issues.csv").write_text(HEADER + lines)
    return folder


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` with its bytes: what a refusal must leave as it was."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def split(source: Path, output: Path | str) -> int:
    return run_stages("split", "--input", source, "--output", output)


def test_an_existing_file_at_the_output_path_is_refused_and_kept(tmp_path, capsys):
    raw = raw_folder(tmp_path / "raw")
    (tmp_path / "notes.txt").write_text("my notes")

    assert split(raw, tmp_path / "notes.txt") == 2

    assert capsys.readouterr().err.strip() == (
        f"stages split: error: {tmp_path / 'notes.txt'}: is a file, not a folder; --output must be a folder "
        "(nothing was changed)"
    )
    assert (tmp_path / "notes.txt").read_text() == "my notes"


def test_an_output_that_is_the_input_is_refused(tmp_path, capsys):
    raw = raw_folder(tmp_path / "raw")
    before = tree(raw)

    assert split(raw, raw) == 2

    assert capsys.readouterr().err.strip() == (
        f"stages split: error: {raw}: is also the input {raw}; write the output to another folder (nothing was changed)"
    )
    assert tree(raw) == before


def test_an_output_that_contains_the_input_is_refused(tmp_path, capsys):
    raw = raw_folder(tmp_path / "work" / "raw")
    before = tree(tmp_path / "work")

    assert split(raw, tmp_path / "work") == 2

    assert capsys.readouterr().err.strip() == (
        f"stages split: error: {tmp_path / 'work'}: contains the input {raw}; replacing it would delete the input "
        "(nothing was changed)"
    )
    assert tree(tmp_path / "work") == before


def test_dot_as_the_output_of_a_step_run_inside_its_data_is_refused(tmp_path, monkeypatch, capsys):
    raw = raw_folder(tmp_path / "raw")
    monkeypatch.chdir(tmp_path)

    assert split(Path("raw"), ".") == 2

    assert (
        "stages split: error: .: contains the input raw; replacing it would delete the input" in capsys.readouterr().err
    )
    assert (raw / "issues.csv").is_file()


def test_an_output_inside_the_input_is_refused(tmp_path, capsys):
    """Else the next split reads its own train.csv/test.csv back: test rows would leak into training."""
    raw = raw_folder(tmp_path / "raw")

    assert split(raw, raw / "out") == 2

    assert capsys.readouterr().err.strip() == (
        f"stages split: error: {raw / 'out'}: lies inside the input {raw}; the next run would read this output "
        "back as input (nothing was changed)"
    )
    assert not (raw / "out").exists()


def test_an_output_reached_through_a_symlink_to_the_input_is_refused(tmp_path, capsys):
    raw = raw_folder(tmp_path / "raw")
    (tmp_path / "alias").symlink_to(raw)

    assert split(raw, tmp_path / "alias") == 2

    assert "is also the input" in capsys.readouterr().err
    assert tree(raw) == {"issues.csv": (raw / "issues.csv").read_bytes()}


def test_a_folder_of_other_files_is_not_replaced(tmp_path, capsys):
    raw = raw_folder(tmp_path / "raw")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 a cat")

    assert split(raw, tmp_path / "photos") == 2

    assert capsys.readouterr().err.strip() == (
        f"stages split: error: {tmp_path / 'photos'}: is not empty and was not written by `stages split` "
        f"(no {MARKER}); remove it or choose a new folder (nothing was changed)"
    )
    assert tree(tmp_path / "photos") == {"cat.jpg": b"\xff\xd8 a cat"}


def test_a_previous_output_of_the_same_step_is_replaced(tmp_path):
    raw = raw_folder(tmp_path / "raw")
    assert split(raw, tmp_path / "out") == 0
    (tmp_path / "out" / "stale.txt").write_text("left from an older run")

    assert run_stages("split", "--input", raw, "--output", tmp_path / "out", "--seed", "7") == 0

    assert sorted(tree(tmp_path / "out")) == sorted([MARKER, "heldout.csv", "report.json", "test.csv", "train.csv"])
    assert json.loads((tmp_path / "out" / "report.json").read_text())["seed"] == 7


def test_every_step_output_carries_the_marker_naming_its_step(tmp_path):
    raw = raw_folder(tmp_path / "raw")

    assert split(raw, tmp_path / "out") == 0

    assert json.loads((tmp_path / "out" / MARKER).read_text())["step"] == "split"


def test_the_output_of_another_step_is_not_replaced(tmp_path, capsys):
    raw = raw_folder(tmp_path / "raw")
    assert split(raw, tmp_path / "split") == 0
    before = tree(tmp_path / "split")

    assert run_stages("pre_process", "--input", tmp_path / "split", "--output", tmp_path / "split") == 2
    capsys.readouterr()
    (tmp_path / "other").mkdir()
    assert split(raw, tmp_path / "other") == 0
    assert run_stages("pre_process", "--input", tmp_path / "split", "--output", tmp_path / "other") == 2

    assert capsys.readouterr().err.strip() == (
        f"stages pre_process: error: {tmp_path / 'other'}: holds the output of `stages split`, not of "
        "`stages pre_process`; choose another folder (nothing was changed)"
    )
    assert tree(tmp_path / "split") == before


def test_a_bundle_passed_as_evaluates_output_is_refused(chain, tmp_path, capsys):
    bundle = Path(shutil.copytree(chain["build"], tmp_path / "bundle"))
    (bundle / MARKER).unlink(missing_ok=True)  # a bundle from before the marker existed is refused the same way
    before = tree(bundle)

    code = run_stages("evaluate", "--model", chain["train"], "--input", chain["split"], "--output", bundle)

    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"stages evaluate: error: {bundle}: is a serving bundle (it has provenance.json), not an output of "
        "`stages evaluate`; choose another folder (nothing was changed)"
    )
    assert tree(bundle) == before


def test_evaluate_refuses_an_output_inside_the_model(chain, tmp_path, capsys):
    model = Path(shutil.copytree(chain["train"], tmp_path / "train"))

    code = run_stages("evaluate", "--model", model, "--input", chain["split"], "--output", model / "eval")

    assert code == 2
    assert f"{model / 'eval'}: lies inside the input {model}" in capsys.readouterr().err
    assert not (model / "eval").exists()


def test_a_symlinked_output_is_filled_through_the_link(tmp_path):
    """Pachyderm's worker makes /pfs/out a symlink to its scratch folder (pachyderm/pachyderm
    src/server/worker/driver/driver_unix.go, linkData): the files must land in the target, the link stays."""
    raw = raw_folder(tmp_path / "raw")
    (tmp_path / "scratch" / "out").mkdir(parents=True)
    (tmp_path / "pfs").mkdir()
    (tmp_path / "pfs" / "out").symlink_to(tmp_path / "scratch" / "out")

    assert split(raw, tmp_path / "pfs" / "out") == 0

    assert (tmp_path / "pfs" / "out").is_symlink()
    assert sorted(tree(tmp_path / "scratch" / "out")) == sorted(
        [MARKER, "heldout.csv", "report.json", "test.csv", "train.csv"]
    )


@pytest.mark.parametrize("target", ["missing", "file.txt"])
def test_a_symlinked_output_to_no_folder_is_refused(tmp_path, capsys, target):
    raw = raw_folder(tmp_path / "raw")
    (tmp_path / "file.txt").write_text("keep me")
    (tmp_path / "out").symlink_to(tmp_path / target)

    assert split(raw, tmp_path / "out") == 2

    assert capsys.readouterr().err.strip() == (
        f"stages split: error: {tmp_path / 'out'}: is a symlink to {tmp_path / target}, which is not a folder; "
        "--output must be a folder or a link to one (nothing was changed)"
    )
    assert (tmp_path / "out").is_symlink() and (tmp_path / "file.txt").read_text() == "keep me"


def test_a_read_only_output_parent_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    raw = raw_folder(tmp_path / "raw")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root ignores the mode bits: make creating anything there fail as it would for a user
        real = tempfile.mkdtemp

        def refuse(
            suffix: str | None = None, prefix: str | None = None, dir: str | os.PathLike[str] | None = None
        ) -> str:
            if dir is not None and Path(dir) == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))
            return real(suffix, prefix, dir)

        monkeypatch.setattr(atomic.tempfile, "mkdtemp", refuse)
    try:
        assert split(raw, locked / "out") == 2
    finally:
        locked.chmod(0o755)

    assert capsys.readouterr().err.strip() == (
        f"stages split: error: {locked / 'out'}: cannot write the output folder: Permission denied "
        f"({locked}) (nothing was changed)"
    )


def test_a_closed_stdout_is_one_line_and_the_output_is_still_written(tmp_path):
    """`stages split ... | head -c 0`: the report cannot be printed, the step's output is complete."""
    raw = raw_folder(tmp_path / "raw")
    command = [str(Path(sys.executable).parent / "stages"), "split", "--input", str(raw), "--output",
               str(tmp_path / "out")]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader went away before the step printed anything
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)

    assert process.returncode == 141, stderr
    assert stderr.strip().splitlines() == [
        f"stages split: stdout was closed, so the report was not printed; the output {tmp_path / 'out'} is complete"
    ]
    assert (tmp_path / "out" / "train.csv").is_file()


def test_predict_refuses_to_overwrite_its_input(chain, tmp_path, capsys):
    source = tmp_path / "in.csv"
    source.write_text("body\nsomething broke\n")

    code = run_stages("predict", "--model", chain["build"], "--input", source, "--output", source)

    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"stages predict: error: {source}: is also the input {source}; write the output to another file "
        "(nothing was changed)"
    )
    assert source.read_text() == "body\nsomething broke\n"


def test_predict_refuses_to_overwrite_a_file_it_did_not_write(chain, tmp_path, capsys):
    (tmp_path / "in.csv").write_text("body\nsomething broke\n")
    (tmp_path / "notes.csv").write_text("my,own\ndata,here\n")

    code = run_stages("predict", "--model", chain["build"], "--input", tmp_path / "in.csv", "--output",
                      tmp_path / "notes.csv")  # fmt: skip

    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"stages predict: error: {tmp_path / 'notes.csv'}: exists and is not an output of `stages predict` "
        "(its header does not end with predicted_title); remove it or choose a new file (nothing was changed)"
    )
    assert (tmp_path / "notes.csv").read_text() == "my,own\ndata,here\n"

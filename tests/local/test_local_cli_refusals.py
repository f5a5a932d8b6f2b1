"""Values the localpach CLI cannot work with get one line naming them and exit 2, before any work starts
(hardening round 3, issue 29: items 8, 11 and "help shows defaults")."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from localpach.cli import main
from tests.local.conftest import put, subcommand_parsers
from tests.local.localpach_fakes import issue_csv

SUBCOMMANDS = sorted(subcommand_parsers())


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's refusals
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code: int, err: str, *named: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    for value in named:
        assert value in err, err


@pytest.fixture
def stored(state: Path, tmp_path: Path) -> Path:
    put(state, issue_csv(tmp_path / "issues.csv", rows=3))
    return state


# --- get-file -o ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output, why", [
    (".", "is a folder"),
    ("missing/folder/out.csv", "does not exist"),
])  # fmt: skip
def test_get_file_refuses_an_output_it_cannot_write(
    stored: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], output: str, why: str
) -> None:
    target = str(tmp_path / output)

    code, _, err = cli(capsys, "--state", str(stored), "get-file", "raw_data@master:issues.csv", "-o", target)

    assert_refused(code, err, target.rstrip("/."), why)


def test_get_file_refuses_an_unwritable_output(
    stored: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "/proc/version"  # exists, and not even root may write it

    code, _, err = cli(capsys, "--state", str(stored), "get-file", "raw_data@master:issues.csv", "-o", target)

    assert_refused(code, err, target)


# --- --state ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["list-repo"], ["put-file", "raw_data", "-f", "x.csv"], ["run"], ["fsck"]])
def test_a_state_that_is_a_file_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    state = tmp_path / "state-file"
    state.write_text("not a folder")

    code, _, err = cli(capsys, "--state", str(state), *command)

    assert_refused(code, err, f"--state {state}: is a file, not a folder")


def test_a_state_under_a_file_is_refused_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    source = issue_csv(tmp_path / "issues.csv", rows=3)

    code, _, err = cli(capsys, "--state", str(blocker / "state"), "put-file", "raw_data", "-f", str(source))

    assert_refused(code, err, f"{blocker} is a file, so no folder can be made under it")


def test_a_state_under_proc_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = issue_csv(tmp_path / "issues.csv", rows=3)

    code, _, err = cli(capsys, "--state", "/proc/self/localpach", "put-file", "raw_data", "-f", str(source))

    assert_refused(code, err, "--state /proc/self/localpach: cannot write there")


# --- run --watch --interval, --specs ----------------------------------------------------------------------------


@pytest.mark.parametrize("interval", ["-1", "nan", "inf", "0", "abc"])
def test_a_watch_interval_that_is_not_a_sane_number_of_seconds_is_refused(
    state: Path, capsys: pytest.CaptureFixture[str], interval: str
) -> None:
    code, _, err = cli(capsys, "--state", str(state), "run", "--watch", "--interval", interval)

    assert_refused(code, err, "--interval", interval)
    assert not state.exists()  # refused before any work


def test_deeply_nested_spec_json_is_refused_naming_the_file(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = tmp_path / "deep.json"
    specs.write_text("[" * 100_000 + "]" * 100_000)

    code, _, err = cli(capsys, "--state", str(state), "run", "--specs", str(specs))

    assert_refused(code, err, str(specs), "nested too deeply")


# --- demo --remove-rows -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", ["0", "-3", "many"])
def test_demo_refuses_a_remove_rows_count_below_one_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: str
) -> None:
    directory = tmp_path / "demo"

    code, _, err = cli(capsys, "demo", "--dir", str(directory), "--remove-rows", rows)

    assert_refused(code, err, "--remove-rows", rows)
    assert not directory.exists()


# --- serve --port / --host: checked before anything is printed --------------------------------------------------


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_serve_refuses_a_port_out_of_range(state: Path, capsys: pytest.CaptureFixture[str], port: str) -> None:
    code, out, err = cli(capsys, "--state", str(state), "serve", "--port", port)

    assert_refused(code, err, "--port", port)
    assert out == ""


def test_serve_refuses_an_empty_host(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--state", str(state), "serve", "--host", "")

    assert_refused(code, err, "--host is empty")
    assert out == ""


def test_serve_refuses_a_busy_port_before_printing_how_to_call_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from localpach import serve

    monkeypatch.setattr(serve, "latest_build", lambda pfs, on_refused=None: object())
    monkeypatch.setattr(serve, "checkout", lambda pfs, commit: tmp_path)
    started = []
    monkeypatch.setattr(serve, "start_server", lambda *args, **kwargs: started.append(args))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        code, out, err = cli(capsys, "--state", str(tmp_path / "state"), "serve", "--port", str(port))

    assert_refused(code, err, f"cannot listen on 127.0.0.1:{port}")
    assert "try:" not in out and "serving" not in out
    assert started == []


# --- help shows defaults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_option_with_a_default_shows_it_and_no_python_names(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = subcommand_parsers()[command]
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())

    for action in parser._actions:
        if (
            action.option_strings
            and action.default is not None
            and action.default is not False
            and action.default != "==SUPPRESS=="
            and action.help
        ):
            assert f"default: {action.default}" in text or "default" in action.help, (command, action.dest)
    assert not re.search(r"default: (None|False|True)\b", text), text
    assert parser.description

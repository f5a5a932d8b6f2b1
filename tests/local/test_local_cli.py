"""The `localpach` CLI: pachctl-shaped tables, provenance, help everywhere, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from localpach.cli import main
from localpach.jobs import JobStore
from localpach.pfs import PFS
from tests.local.conftest import cli, put, run, subcommand_parsers
from tests.local.localpach_fakes import issue_csv, project_like_specs

SUBCOMMANDS = sorted(subcommand_parsers())


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: localpach {command}" in capsys.readouterr().out


def test_the_cli_offers_the_conventional_subcommands() -> None:
    expected = {"put-file", "list-repo", "list-job", "list-file", "inspect-commit", "run", "serve", "demo"}
    assert expected <= set(SUBCOMMANDS)


def test_list_repo_shows_every_repo_with_its_size(populated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--state", str(populated), "list-repo")

    assert code == 0
    assert out.split("\n")[0].split() == ["PROJECT", "NAME", "CREATED", "SIZE", "(MASTER)", "DESCRIPTION"]  # 2.12
    names = [line.split()[1] for line in out.strip().split("\n")[1:]]
    assert sorted(names) == sorted(["raw_data", "split", "pre_process", "train", "build", "export"])


def test_list_job_shows_pachctl_columns_and_every_job(populated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = cli(capsys, "--state", str(populated), "list-job")

    header, *rows = out.strip().split("\n")
    columns = ["PROJECT", "PIPELINE", "ID", "STARTED", "DURATION", "RESTART", "PROGRESS", "DL", "UL", "STATE"]
    assert header.split() == columns  # pachctl 2.12's JobHeader
    assert len(rows) == 5
    assert all(row.rstrip().endswith("success") and "1 + 0 / 1" in row for row in rows)
    for job in JobStore(populated).all():
        assert any(row.split()[:3] == ["default", job.pipeline, job.id] for row in rows)


def test_list_file_lists_a_commit_and_a_directory(populated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, top, _ = cli(capsys, "--state", str(populated), "list-file", "split@master")
    _, below, _ = cli(capsys, "--state", str(populated), "list-file", "split@master", "seen")

    assert top.split("\n")[0].split() == ["SIZE", "NAME"]  # pachctl 2.12's FileHeader
    names = [line.split()[-1] for line in top.strip().split("\n")[1:]]
    assert "/result.json" in names and "/seen/" in names
    assert "/seen/raw_data__issues.csv.seen" in below


def test_inspect_commit_prints_the_full_provenance_chain(populated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pfs = PFS(populated)
    build = pfs.resolve("build", "master")

    code, out, _ = cli(capsys, "--state", str(populated), "inspect-commit", f"build@{build.id[:10]}")

    assert code == 0
    assert f"build@{build.id}" in out
    for repo in ("raw_data", "split", "pre_process", "train"):
        head = pfs.head(repo)
        assert head is not None and f"{repo} " in out and head in out
    for pipeline in ("split", "pre_process", "train", "build"):
        spec_head = pfs.head("__spec__", pipeline)
        assert spec_head is not None and spec_head in out


def test_a_failed_job_shows_its_reason_and_log_tail(
    state: Path, tmp_path: Path, control: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=3))
    (control / "fail-split").touch()
    failed = run(state, project_like_specs()).jobs[0]

    _, shown, _ = cli(capsys, "--state", str(state), "inspect-job", failed.id)
    _, log, _ = cli(capsys, "--state", str(state), "logs", failed.id)

    assert "failure" in shown and "exit code 1" in shown and "boom, failing on purpose" in shown
    assert "split: boom, failing on purpose" in log


def test_run_exits_non_zero_when_a_job_fails(
    state: Path, tmp_path: Path, control: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(state, issue_csv(tmp_path / "issues.csv", rows=3))
    (control / "fail-train").touch()
    specs = tmp_path / "specs.json"
    from tests.local.localpach_fakes import write_specs

    write_specs(specs, project_like_specs())

    code, out, _ = cli(capsys, "--state", str(state), "run", "--specs", str(specs))

    assert code == 3
    assert "✗ train" in out and "1 failed" in out


def test_serve_without_a_built_model_says_how_to_build_one(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "--state", str(state), "serve")

    assert code == 1
    assert "no built model yet" in err and "localpach run" in err and "localpach demo" in err


def test_reading_commands_on_a_missing_state_explain_how_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "--state", str(tmp_path / "nowhere"), "list-job")

    assert code == 1
    assert "no localpach state" in err and "localpach demo" in err


def test_the_state_directory_comes_from_the_environment(
    populated: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALPACH_STATE", str(populated))

    code, out, _ = cli(capsys, "list-repo")

    assert code == 0 and "raw_data" in out


def test_sigint_stops_localpach_even_when_it_was_started_with_sigint_ignored(monkeypatch) -> None:
    # A non-interactive shell starts `cmd &` with SIGINT ignored and Python keeps it ignored: `localpach serve &` (or a
    # CI step run that way) would then never stop on `kill -INT`, and its model server would outlive the test.
    import argparse
    import signal

    from localpach import cli

    seen = {}

    def command(args: argparse.Namespace) -> int:
        seen["sigint"] = signal.getsignal(signal.SIGINT)
        return 0

    parser = argparse.ArgumentParser()
    parser.set_defaults(handler=command)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert cli.main([]) == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # put back as it was
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen["sigint"] is signal.default_int_handler

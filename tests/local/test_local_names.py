"""Branch and commit names are checked as Pachyderm checks them, before anything is written.

Pachyderm's rule (pachyderm/pachyderm v2.12.0-rc.3, src/internal/ancestry/ancestry.go `ValidateName`, called for
every branch by src/server/pfs/server/server_branch.go and server_commit.go): a branch name matches
`^[a-zA-Z0-9_-]+$`. pachctl reads a 32-hex UUIDv4 after `@` as a commit ID, never a branch
(src/internal/cmdutil/cobra.go `parseFile`, src/internal/uuid/uuid.go `IsUUIDWithoutDashes`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from localpach.cli import main
from localpach.errors import InputRefused, SpecError
from localpach.pfs import PFS
from tests.local.conftest import run
from tests.local.localpach_fakes import issue_csv, project_like_specs, spec
from tests.local.localpach_fakes import pfs as pfs_input


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files_below(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


@pytest.fixture
def ran(populated: Path) -> Path:
    """A state where every pipeline has run once on a three-row CSV (a copy of the session's one such run)."""
    return populated


def test_a_branch_that_climbs_out_of_the_state_folder_is_refused_and_nothing_is_written(
    ran: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = files_below(tmp_path)
    source = issue_csv(tmp_path / "other.csv", rows=2)
    before.add("other.csv")

    code, _, err = cli(capsys, "--state", str(ran), "put-file", "raw_data@../../../x", "issues.csv", "-f", str(source))

    assert code == 2
    assert "invalid branch name '../../../x'" in err and "letters, digits, '_' and '-'" in err
    assert files_below(tmp_path) == before


def test_a_branch_cannot_plant_a_head_in_another_repo(
    ran: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split_head = PFS(ran).head("split")
    source = issue_csv(tmp_path / "other.csv", rows=2)

    code, _, _ = cli(
        capsys, "--state", str(ran), "put-file", "raw_data@../../split/branches/master", "x.csv", "-f", str(source)
    )

    assert code == 2
    assert PFS(ran).head("split") == split_head
    assert run(ran, project_like_specs()).ok


def test_a_branch_with_a_slash_is_refused_instead_of_being_committed_and_then_lost(
    ran: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commits = sorted(path.name for path in (ran / "repos" / "raw_data" / "commits").iterdir())
    source = issue_csv(tmp_path / "other.csv", rows=2)

    code, out, err = cli(capsys, "--state", str(ran), "put-file", "raw_data@dev/x", "issues.csv", "-f", str(source))

    assert code == 2 and "committed" not in out
    assert "invalid branch name 'dev/x'" in err
    assert sorted(path.name for path in (ran / "repos" / "raw_data" / "commits").iterdir()) == commits


def test_a_valid_branch_besides_master_keeps_its_commit_through_the_next_run(
    ran: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = issue_csv(tmp_path / "other.csv", rows=2)
    code, _, _ = cli(capsys, "--state", str(ran), "put-file", "raw_data@dev-x_2", "issues.csv", "-f", str(source))
    committed = PFS(ran).head("raw_data", "dev-x_2")

    run(ran, project_like_specs())

    assert code == 0 and committed is not None
    assert PFS(ran).head("raw_data", "dev-x_2") == committed
    assert PFS(ran).get_commit("raw_data", committed).branch == "dev-x_2"


def test_a_branch_named_like_a_commit_id_is_refused(
    ran: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commit_id = PFS(ran).head("raw_data")
    source = issue_csv(tmp_path / "other.csv", rows=2)

    code, _, err = cli(capsys, "--state", str(ran), "put-file", f"raw_data@{commit_id}", "x.csv", "-f", str(source))

    assert code == 2
    assert "commit ID" in err
    assert PFS(ran).branches("raw_data") == ["master"]


def test_delete_file_refuses_an_invalid_branch(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "--state", str(ran), "delete-file", "raw_data@../../split/branches/master:issues.csv")

    assert code == 2
    assert "invalid branch name" in err


def test_reading_commands_refuse_a_path_like_branch_by_name(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "--state", str(ran), "list-commit", "raw_data@../../split/branches/master")

    assert code == 2
    assert "invalid branch name '../../split/branches/master'" in err


def test_a_spec_whose_input_branch_is_a_path_fails_that_pipeline_naming_the_branch(ran: Path, tmp_path: Path) -> None:
    specs = project_like_specs()
    specs[0] = spec(
        "split", {"pfs": {**pfs_input("raw_data")["pfs"], "branch": "../../build/branches/master"}}, ["raw_data"]
    )

    summary = run(ran, specs)

    split = summary.statuses[0]
    assert split.pipeline == "split" and split.status == "failed"
    assert "invalid branch name '../../build/branches/master'" in split.detail


def test_the_library_refuses_a_path_like_branch_or_commit_id(pfs: PFS, tmp_path: Path) -> None:
    pfs.init()
    pfs.create_repo("raw_data")
    stored = pfs.objects.put_bytes(b"a,b\n")

    with pytest.raises(InputRefused, match="invalid branch name"):
        pfs.commit("raw_data", {"a.csv": stored}, origin="user", branch="a/b")
    with pytest.raises(InputRefused, match="invalid commit ID"):
        pfs.commit("raw_data", {"a.csv": stored}, origin="user", commit_id="../../x")
    assert pfs.branches("raw_data") == []
    assert list((pfs.repos_dir / "raw_data" / "commits").iterdir()) == []


def test_a_head_record_naming_a_path_is_refused_not_followed(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    branch = ran / "repos" / "split" / "branches" / "master.json"
    head = PFS(ran).head("raw_data")
    assert head is not None
    branch.write_text(json.dumps({"head": "../../raw_data/commits/" + head}))

    code, _, err = cli(capsys, "--state", str(ran), "list-file", "split@master")

    assert code != 0
    assert str(branch) in err


def test_an_invalid_branch_on_a_fresh_state_creates_nothing(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = issue_csv(tmp_path / "issues.csv", rows=2)

    code, _, err = cli(capsys, "--state", str(state), "put-file", "raw_data@dev/x", "issues.csv", "-f", str(source))

    assert code == 2 and "invalid branch name" in err
    assert not state.exists()


def test_a_spec_input_name_that_climbs_out_of_pfs_is_refused_before_anything_runs(ran: Path, tmp_path: Path) -> None:
    specs = project_like_specs()
    specs[0] = spec("split", pfs_input("raw_data", name="../../../../../../escaped"), ["raw_data"])
    jobs = sorted(path.name for path in (ran / "jobs").iterdir())

    with pytest.raises(SpecError, match=re.escape("input name '../../../../../../escaped'")):
        run(ran, specs)
    assert sorted(path.name for path in (ran / "jobs").iterdir()) == jobs

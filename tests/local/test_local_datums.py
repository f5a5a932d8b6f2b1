"""Glob patterns and input combinators cut commits into datums the way Pachyderm does."""

from __future__ import annotations

import pytest

from localpach.datums import expand, glob_matches
from localpach.errors import SpecError
from localpach.humanize import size
from localpach.pfs import Commit
from localpach.store import StoredObject

FILES = ["a.csv", "b.csv", "dir/c.csv", "dir/sub/d.csv"]


@pytest.mark.parametrize(
    ("glob", "datums"),
    [
        ("/", [""]),
        ("/*", ["a.csv", "b.csv", "dir"]),
        ("/*.csv", ["a.csv", "b.csv"]),
        ("/dir/*", ["dir/c.csv", "dir/sub"]),
        ("/**/*.csv", ["a.csv", "b.csv", "dir/c.csv", "dir/sub/d.csv"]),
        ("/nothing*", []),
    ],
)
def test_glob_patterns_select_datums_like_pachyderm(glob: str, datums: list[str]) -> None:
    assert glob_matches(FILES, glob) == datums


def commit(repo: str, files: list[str]) -> Commit:
    objects = {path: StoredObject(hash=f"{path:0>64}"[-64:], size=1) for path in files}
    return Commit(repo, f"{repo:0<32}"[:32], "master", None, "user", 0.0, 0.0, objects, "", len(files))


def test_a_cross_is_the_product_and_a_union_the_concatenation_of_datums() -> None:
    commits = {"images": commit("images", ["1.png", "2.png"]), "labels": commit("labels", ["x.txt", "y.txt", "z.txt"])}
    images = {"pfs": {"repo": "images", "glob": "/*"}}
    labels = {"pfs": {"repo": "labels", "glob": "/*"}}

    crossed = expand({"cross": [images, labels]}, commits, "p")
    united = expand({"union": [images, labels]}, commits, "p")

    assert len(crossed) == 6 and all(len(datum.inputs) == 2 for datum in crossed)
    assert [datum.describe() for datum in united] == [
        "images:/1.png",
        "images:/2.png",
        "labels:/x.txt",
        "labels:/y.txt",
        "labels:/z.txt",
    ]


def test_a_datum_whose_files_change_gets_a_new_hash_and_one_that_does_not_keeps_it() -> None:
    before = expand({"pfs": {"repo": "r", "glob": "/*"}}, {"r": commit("r", ["a", "b"])}, "p")
    changed = commit("r", ["a", "b"])
    changed.files["b"] = StoredObject(hash="f" * 64, size=2)
    after = expand({"pfs": {"repo": "r", "glob": "/*"}}, {"r": changed}, "p")

    assert before[0].hash("spec") == after[0].hash("spec")
    assert before[1].hash("spec") != after[1].hash("spec")
    assert before[0].hash("spec") != before[0].hash("other spec")


def test_unsupported_input_types_are_refused_with_the_pipeline_name() -> None:
    with pytest.raises(SpecError, match="pipeline p: input type 'join' is not supported"):
        expand({"join": []}, {}, "p")


@pytest.mark.parametrize(("num", "text"), [(0, "0B"), (74, "74B"), (106700, "104.2KiB"), (2685403, "2.561MiB")])
def test_sizes_print_like_pachctl(num: int, text: str) -> None:
    assert size(num) == text

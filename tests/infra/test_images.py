"""The stage image's tag follows its content: unchanged package, same tag, no rebuild and no pipeline update."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra.images import STAGES_DIR, content_tag


@pytest.fixture
def package(tmp_path: Path) -> Path:
    copy = tmp_path / "stages"
    shutil.copytree(STAGES_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return copy


def test_the_same_files_give_the_same_tag(package: Path) -> None:
    assert content_tag(package, "cpu") == content_tag(STAGES_DIR, "cpu")


def test_a_changed_source_file_gives_a_new_tag(package: Path) -> None:
    before = content_tag(package, "cpu")
    (package / "src" / "issue_titles" / "__init__.py").write_text("# changed\n", encoding="utf-8")
    assert content_tag(package, "cpu") != before


def test_a_changed_lock_file_gives_a_new_tag(package: Path) -> None:
    before = content_tag(package, "cpu")
    with (package / "requirements.lock").open("a") as lock:
        lock.write("six==1.16.0\n")
    assert content_tag(package, "cpu") != before


def test_caches_and_files_outside_the_image_do_not_change_the_tag(package: Path) -> None:
    before = content_tag(package, "cpu")
    (package / "src" / "issue_titles" / "__pycache__").mkdir(exist_ok=True)
    (package / "src" / "issue_titles" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (package / "bench_decode.py").write_text("# not copied into the image\n", encoding="utf-8")
    assert content_tag(package, "cpu") == before


def test_cpu_and_gpu_builds_have_different_tags_that_say_which(package: Path) -> None:
    cpu, gpu = content_tag(package, "cpu"), content_tag(package, "gpu")
    assert cpu.startswith("cpu-") and gpu.startswith("gpu-") and cpu[4:] != gpu[4:]

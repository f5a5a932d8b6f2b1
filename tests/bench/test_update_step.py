"""bench.update_step changes only train's update step size in the project's incremental specs, and refuses scales an
update would refuse."""

from __future__ import annotations

import pytest

from bench.update_step import main, specs_with_update_scale


def test_only_trains_command_gets_the_step_size_and_the_project_specs_stay_as_they_were() -> None:
    from localpach.specs import local_settings, project_specs

    specs = project_specs(local_settings(incremental=True))
    before = [spec["transform"]["cmd"][:] for spec in specs]

    changed = specs_with_update_scale(specs, 0.05)

    for original, spec, new in zip(before, specs, changed, strict=True):
        assert spec["transform"]["cmd"] == original  # a copy was changed, not the project's specs
        added = ["--update-lr-scale", "0.05"] if spec["pipeline"]["name"] == "train" else []
        assert new["transform"]["cmd"] == original + added
        assert {key: value for key, value in new.items() if key != "transform"} == {
            key: value for key, value in spec.items() if key != "transform"
        }


@pytest.mark.parametrize("scales", ["0", "1.5", "", "0.1,-1"])
def test_a_scale_outside_zero_to_one_is_refused_before_any_training(
    scales: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--scales", scales])
    assert exit_.value.code == 2
    assert "--scales: each value in (0, 1]" in capsys.readouterr().err

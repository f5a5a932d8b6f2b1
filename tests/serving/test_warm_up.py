"""Before it reports ready, the runtime warms the predictor up: through `warm_up` when the predictor has one (the
real one compiles every XLA batch size there), else with one prediction."""

import asyncio
from pathlib import Path

from mlserver.settings import ModelSettings

from issue_titles.serving.limits import ServingLimits
from issue_titles.serving.runtime import WARM_UP_BODY, IssueTitleRuntime
from issue_titles.serving.settings import model_settings_dict


def loaded_predictor(folder: Path, loader: str):
    runtime = IssueTitleRuntime(
        ModelSettings(**model_settings_dict(str(folder), ServingLimits(), predictor_loader=loader))
    )

    async def load():
        assert await runtime.load()
        predictor = runtime._predictor
        await runtime.unload()
        return predictor

    return asyncio.run(load())


def test_a_predictor_with_warm_up_is_warmed_through_it_before_the_model_is_ready(tmp_path):
    predictor = loaded_predictor(tmp_path, "tests.serving.fake_predictor:load_warming")
    assert predictor.warmed_with == [WARM_UP_BODY]
    assert predictor.calls == []  # warm_up replaced the plain call


def test_any_other_predictor_is_warmed_with_one_prediction(tmp_path):
    predictor = loaded_predictor(tmp_path, "tests.serving.fake_predictor:load")
    assert predictor.calls == [1]

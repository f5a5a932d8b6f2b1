"""`MergingModelThread`: batches that queue behind a busy model go in as one call; results and failures stay
with the requests they belong to."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from issue_titles.serving.runtime import MergingModelThread, PredictionFailed


class GatedPredictor:
    """Echo model whose first call blocks until released, so a test can queue work behind a busy model."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.first_call_started = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def predict(self, bodies: list[str]) -> list[str]:
        self.calls.append(list(bodies))
        if len(self.calls) == 1:
            self.first_call_started.set()
            self.release.wait(timeout=10)
        if self.fail_on in bodies:
            raise RuntimeError("model blew up")
        return [f"title of {body}" for body in bodies]


async def _queue_behind_busy_model(model: GatedPredictor, thread: MergingModelThread, waiting: list[list[str]]):
    first = asyncio.ensure_future(thread.predict(model, ["a"]))
    await asyncio.get_running_loop().run_in_executor(None, model.first_call_started.wait, 10)
    later = [asyncio.ensure_future(thread.predict(model, bodies)) for bodies in waiting]
    await asyncio.sleep(0)  # let them queue
    model.release.set()
    return await asyncio.gather(first, *later, return_exceptions=True)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def test_batches_waiting_for_a_busy_model_share_one_call_and_get_their_own_titles(executor) -> None:
    model = GatedPredictor()
    results = asyncio.run(
        _queue_behind_busy_model(model, MergingModelThread(executor, max_bodies=512), [["b", "c"], ["d"]])
    )
    assert model.calls == [["a"], ["b", "c", "d"]]
    assert results == [["title of a"], ["title of b", "title of c"], ["title of d"]]


def test_merged_call_stops_at_max_bodies(executor) -> None:
    model = GatedPredictor()
    results = asyncio.run(
        _queue_behind_busy_model(model, MergingModelThread(executor, max_bodies=2), [["b"], ["c"], ["d", "e", "f"]])
    )
    assert model.calls == [["a"], ["b", "c"], ["d", "e", "f"]]  # an oversized batch still runs, alone
    assert results[3] == ["title of d", "title of e", "title of f"]


def test_a_failed_call_fails_only_the_batches_in_it(executor) -> None:
    model = GatedPredictor(fail_on="a")
    results = asyncio.run(_queue_behind_busy_model(model, MergingModelThread(executor, max_bodies=512), [["b"]]))
    assert isinstance(results[0], PredictionFailed)
    assert results[1] == ["title of b"]


def test_a_wrong_number_of_titles_is_a_failure_not_a_misaligned_answer(executor) -> None:
    class Short:
        def predict(self, bodies: list[str]) -> list[str]:
            return ["only one"]

    async def call():
        return await MergingModelThread(executor, max_bodies=512).predict(Short(), ["x", "y"])

    with pytest.raises(PredictionFailed):
        asyncio.run(call())

"""A stand-in for `TitlePredictor` with the same `load` / `predict` shape, for server tests that must not
depend on TensorFlow: its title is visibly derived from its body, so order and batching can be checked."""

import os
import threading
import time
from pathlib import Path


class EchoPredictor:
    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.calls: list[int] = []

    def predict(self, bodies: list[str]) -> list[str]:
        self.calls.append(len(bodies))
        return ["title: " + " ".join(body.split()[:3]) for body in bodies]


def load(model_dir: Path) -> EchoPredictor:
    return EchoPredictor(model_dir)


def load_slowly(model_dir: Path) -> EchoPredictor:
    """Takes FAKE_LOAD_SECONDS to load, so a test can see the server live but not yet ready."""
    time.sleep(float(os.environ.get("FAKE_LOAD_SECONDS", "5")))
    return EchoPredictor(model_dir)


def load_when_released(model_dir: Path) -> EchoPredictor:
    """Loads once the file FAKE_LOAD_RELEASE names exists (or after FAKE_LOAD_SECONDS, 60 by default): a test sees the
    server live but not ready for as long as it needs, however slow the machine, and no longer."""
    release = Path(os.environ["FAKE_LOAD_RELEASE"])
    deadline = time.monotonic() + float(os.environ.get("FAKE_LOAD_SECONDS", "60"))
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return EchoPredictor(model_dir)


def load_broken(model_dir: Path) -> EchoPredictor:
    raise OSError(f"no model weights in {model_dir}")


class StuckPredictor(EchoPredictor):
    """Never returns for a body containing "stuck": a model call that hangs (the server must still stop). Creates the
    file FAKE_STUCK_MARK names (when set) as it starts hanging, so a test signals the server exactly then instead of
    sleeping long enough for a slow machine."""

    def predict(self, bodies: list[str]) -> list[str]:
        if any("stuck" in body for body in bodies):
            if os.environ.get("FAKE_STUCK_MARK"):
                Path(os.environ["FAKE_STUCK_MARK"]).touch()
            threading.Event().wait()
        return super().predict(bodies)


def load_stuck(model_dir: Path) -> StuckPredictor:
    return StuckPredictor(model_dir)


class WarmingPredictor(EchoPredictor):
    """Offers `warm_up`, as TitlePredictor does (it compiles each batch size there); records how it was warmed."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__(model_dir)
        self.warmed_with: list[str] = []

    def warm_up(self, body: str) -> None:
        self.warmed_with.append(body)


def load_warming(model_dir: Path) -> WarmingPredictor:
    return WarmingPredictor(model_dir)


class SleepyPredictor(EchoPredictor):
    """Takes FAKE_PREDICT_SECONDS per model call: requests queue behind it, so a shutdown finds some in flight."""

    def predict(self, bodies: list[str]) -> list[str]:
        time.sleep(float(os.environ.get("FAKE_PREDICT_SECONDS", "0.5")))
        return super().predict(bodies)


def load_sleepy(model_dir: Path) -> SleepyPredictor:
    return SleepyPredictor(model_dir)

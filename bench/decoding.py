"""Benchmark 1: batched compiled greedy decoding vs the tutorial-style per-token, per-body loop."""

import time
from pathlib import Path

from bench.common import Model, Section, sample_bodies, verdict

SIZES = (1, 32, 256, 1024)
QUICK_SIZES = (1, 32)


def measure(model: Model, sizes: tuple[int, ...], reference_cap: int) -> list[dict]:
    """Titles/s of both decoders per batch size; the per-token loop runs on at most `reference_cap` bodies and its
    per-body time is extrapolated (it is linear in bodies: one call per token per body)."""
    from issue_titles.predictor import TitlePredictor

    predictor = TitlePredictor.load(model.path)
    pool = sample_bodies(max(sizes))
    predictor.predict(pool[:8])  # warm up: compile, first-call costs
    predictor.predict_reference(pool[:2])
    results = []
    for size in sizes:
        bodies = pool[:size]
        predictor.predict(bodies)  # this batch shape compiled once, not timed
        started = time.perf_counter()
        batched = predictor.predict(bodies)
        batched_s = time.perf_counter() - started
        reference_bodies = bodies[: min(size, reference_cap)]
        started = time.perf_counter()
        reference = predictor.predict_reference(reference_bodies)
        reference_s = time.perf_counter() - started
        reference_per_body = reference_s / len(reference_bodies)
        results.append(
            {
                "bodies": size,
                "batched_s": batched_s,
                "batched_tps": size / batched_s,
                "reference_measured_bodies": len(reference_bodies),
                "reference_tps": 1 / reference_per_body,
                "ratio": (reference_per_body * size) / batched_s,
                "same_titles": batched[: len(reference)] == reference,
            }
        )
    return results


def run(model: Model, quick: bool, plots_dir: Path) -> Section:
    sizes = QUICK_SIZES if quick else SIZES
    results = measure(model, sizes, reference_cap=8 if quick else 32)
    section = Section(
        "Decoding (batched compiled vs per-token loop)",
        ["bodies", "batched titles/s", "per-token titles/s", "per-token bodies timed", "ratio", "same titles"],
    )
    for item in results:
        section.rows.append(
            [
                item["bodies"],
                f"{item['batched_tps']:.1f}",
                f"{item['reference_tps']:.1f}",
                (
                    item["reference_measured_bodies"]
                    if item["reference_measured_bodies"] == item["bodies"]
                    else f"{item['reference_measured_bodies']} (extrapolated)"
                ),
                f"{item['ratio']:.1f}x",
                "yes" if item["same_titles"] else "no",
            ]
        )
    section.notes.append(
        f"Model: {model.origin}. Bodies from the vendored data set. The per-token loop is capped and its per-body time "
        "extrapolated linearly where marked; both decoders are warmed up first."
    )
    at_256 = next((item for item in results if item["bodies"] == 256), None)
    if at_256:
        section.targets.append(
            (
                "decoding >= 20x the per-token loop at 256 bodies",
                f"{at_256['ratio']:.1f}x",
                verdict(at_256["ratio"] >= 20),
            )
        )
    section.plots.append(_plot(results, plots_dir))
    return section


def _plot(results: list[dict], plots_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    path = plots_dir / "decoding.png"
    figure, axis = plt.subplots(figsize=(6, 4))
    sizes = [item["bodies"] for item in results]
    axis.plot(sizes, [item["batched_tps"] for item in results], marker="o", label="batched compiled")
    axis.plot(sizes, [item["reference_tps"] for item in results], marker="s", label="per-token loop")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("bodies per call")
    axis.set_ylabel("titles / s")
    axis.set_title("Decoding throughput")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path

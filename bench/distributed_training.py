"""`python -m bench.distributed_training [--rows 4000] [--epochs 3] [--workers 1,2]`: single-worker vs N-worker
data-parallel training (`stages train --workers N`: N processes on 127.0.0.1 with the TF_CONFIG each TFJob replica
gets, MultiWorkerMirroredStrategy), side by side on the same sample, model, epochs and global batch size.

Reports the training throughput (samples/s over `fit`, and the whole `stages train` wall time, which adds the
workers' start and the collective's setup) and the quality (held-out and test ROUGE-L from `stages evaluate`). On
one machine the workers share its cores, so no speed-up is expected: the point is equal quality and the measured
cost of the collective. Writes a markdown table (default `bench/distributed_training.md`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BENCH_DIR, machine_facts

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
MODEL_FLAGS = ("--batch-size", "64", "--embedding-dim", "64", "--hidden-dim", "128")


def stages(*args: object) -> float:
    """Run one `stages` step in a fresh process (as a pipeline worker would); its wall seconds."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "issue_titles.cli", *map(str, args)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def measure(
    work: Path, rows: int, epochs: int, workers: list[int], model_flags: tuple[str, ...] = MODEL_FLAGS
) -> tuple[dict, list[dict]]:
    stages("split", "--input", DATA_DIR, "--output", work / "split", "--sample-size", rows)
    stages("pre_process", "--input", work / "split", "--output", work / "pre_process")
    split = json.loads((work / "split" / "report.json").read_text())
    results = []
    for count in workers:
        out = work / f"train-{count}"
        wall = stages(
            "train",
            "--input",
            work / "pre_process",
            "--output",
            out,
            "--epochs",
            epochs,
            *model_flags,
            "--workers",
            count,
        )
        training = json.loads((out / "model.json").read_text())["training"]
        stages("evaluate", "--model", out, "--input", work / "split", "--output", work / f"eval-{count}")
        metrics = json.loads((work / f"eval-{count}" / "metrics.json").read_text())
        used = round(training["train_rows"] * (1 - training["validation_split"]))
        results.append(
            {
                "workers": count,
                "epochs": training["epochs_run"],
                "fit_seconds": training["seconds"],
                "wall_seconds": round(wall, 1),
                "samples_per_second": used * training["epochs_run"] / training["seconds"],
                "final_loss": training["final_loss"],
                "best_val_loss": training["best_val_loss"],
                "heldout_rouge_l": metrics["heldout"]["model"]["rouge_l"],
                "test_rouge_l": metrics["model"]["rouge_l"],
            }
        )
    return split, results


def table(split: dict, results: list[dict], rows: int, model_flags: tuple[str, ...] = MODEL_FLAGS) -> str:
    base = results[0]
    lines = [
        f"Sample: `--sample-size {rows}` of the vendored data set -> {split['train_rows']} training rows "
        f"({round(split['train_rows'] * 0.88)} fitted, 12% validation), {split['test_rows']} test rows, "
        f"{split['heldout_rows']} held-out-repository rows. Model: default architecture, "
        f"{'`' + ' '.join(model_flags) + '`' if model_flags else 'the stage defaults (size and batch)'}, "
        f"{base['epochs']} epochs; the batch size is the global batch in every run.",
        "",
        "| workers | samples/s (fit) | ratio | fit s | `stages train` wall s | final loss | best val loss "
        "| held-out ROUGE-L | Δ vs 1 | test ROUGE-L |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['workers']} | {r['samples_per_second']:.0f} "
            f"| {r['samples_per_second'] / base['samples_per_second']:.2f}x "
            f"| {r['fit_seconds']:.1f} | {r['wall_seconds']:.1f} | {r['final_loss']:.4f} | {r['best_val_loss']:.4f} "
            f"| {r['heldout_rouge_l']:.4f} | {r['heldout_rouge_l'] - base['heldout_rouge_l']:+.4f} "
            f"| {r['test_rouge_l']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.distributed_training", description=__doc__.split(":")[0])
    parser.add_argument("--rows", type=int, default=4000, help="rows split samples from the data set")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts; the first is the baseline")
    parser.add_argument(
        "--stage-defaults",
        action="store_true",
        help="train the stage's default model size and batch instead of the smaller model",
    )
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "distributed_training.md")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as scratch:
        model_flags = () if args.stage_defaults else MODEL_FLAGS
        split, results = measure(Path(scratch), args.rows, args.epochs, workers, model_flags)
    facts = machine_facts()
    text = "\n".join(
        [
            "# Distributed training: single worker vs data-parallel workers (local, 127.0.0.1)",
            "",
            f"`python -m bench.distributed_training --rows {args.rows} --epochs {args.epochs} --workers {args.workers}"
            f"{' --stage-defaults' if args.stage_defaults else ''}`"
            f" ({time.perf_counter() - started:.0f} s)",
            "",
            table(split, results, args.rows, model_flags),
            "",
            "| fact | value |",
            "|---|---|",
            *[f"| {key} | {value} |" for key, value in facts.items()],
            "",
        ]
    )
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

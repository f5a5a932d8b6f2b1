"""`python -m bench [--quick] [--only decoding,serving,observability,pipeline,program] [--model DIR]`: run the
benchmarks, write results.md."""

import argparse
import sys
import time
from pathlib import Path

from bench.common import BENCH_DIR, Section, machine_facts, pick_model, scratch_dir

ALL = ("decoding", "serving", "observability", "pipeline", "program", "incremental")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split(":")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, few sizes and requests: a smoke run (~2 min)")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results.md", help="where to write the markdown")
    parser.add_argument(
        "--incremental-rows",
        type=int,
        default=None,
        help="incremental benchmark: a seeded sample of this many rows (default: the full data set)",
    )
    parser.add_argument(
        "--incremental-model",
        choices=("default", "demo"),
        default="default",
        help="incremental benchmark: the pipeline's default model, or the demo's smaller one",
    )
    parser.add_argument(
        "--incremental-no-successive",
        action="store_true",
        help="incremental benchmark: leave out updates 2..10 and their full retrain (two thirds of its time)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="DIR",
        help="decoding, serving, observability: time this serving bundle (a folder `stages build` wrote) instead of "
        "runs/bundle or a tiny model trained for the run",
    )
    parser.add_argument(
        "--keep-scratch",
        type=Path,
        default=None,
        help="work in this empty folder and keep it (localpach states, models) instead of a removed temporary one",
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(ALL))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    if args.model is not None and not (args.model / "model.json").is_file():
        parser.error(f"--model {args.model}: no model.json there; give a folder `stages build` wrote (a bundle)")

    from bench import report

    plots_dir = args.output.resolve().parent / "plots"  # next to results.md, so its image links work
    started = time.perf_counter()
    sections: list[Section] = []
    with scratch_dir(args.keep_scratch) as scratch_name:
        scratch = Path(scratch_name)
        uses_model = {"decoding", "serving", "observability"} & set(chosen)
        model = pick_model(scratch, args.quick, args.model) if uses_model else None
        server_rss = None
        if "decoding" in chosen:
            from bench import decoding

            assert model is not None  # picked above for this benchmark
            sections.append(_announce(decoding.run(model, args.quick, plots_dir)))
        if "serving" in chosen:
            from bench import serving

            assert model is not None  # picked above for this benchmark
            section, extra = serving.run(model, args.quick, scratch, plots_dir)
            server_rss = extra.get("server_peak_rss_kb")
            sections.append(_announce(section))
        if "observability" in chosen:
            from bench import observability

            assert model is not None  # picked above for this benchmark
            sections.append(_announce(observability.run(model, args.quick, scratch)))
        if "pipeline" in chosen:
            from bench import pipeline

            for section in pipeline.run(args.quick, scratch, server_rss, plots_dir):
                sections.append(_announce(section))
        if "incremental" in chosen:
            from bench import incremental

            for section in incremental.run(
                args.quick,
                scratch,
                args.incremental_rows,
                args.incremental_model,
                successive=not args.incremental_no_successive,
            ):
                sections.append(_announce(section))
        if "program" in chosen:
            from bench import program

            sections.append(_announce(program.run(args.quick)))
    facts = machine_facts()
    if model is not None:
        facts["model"] = model.origin
    facts["mode"] = "quick" if args.quick else "default"
    facts["bench wall time"] = f"{time.perf_counter() - started:.0f} s"
    command = (
        "python -m bench"
        + (" --quick" if args.quick else "")
        + (f" --only {','.join(chosen)}" if tuple(chosen) != ALL else "")
        + (f" --incremental-rows {args.incremental_rows}" if args.incremental_rows else "")
        + (f" --incremental-model {args.incremental_model}" if args.incremental_model != "default" else "")
        + (" --incremental-no-successive" if args.incremental_no_successive else "")
        + (f" --model {args.model}" if args.model is not None else "")
    )
    text = report.render(facts, sections, command, args.output.resolve().parent)
    report.write(text, args.output)
    print(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _announce(section: Section) -> Section:
    print(f"[bench] {section.title}: done", file=sys.stderr, flush=True)
    return section


if __name__ == "__main__":
    sys.exit(main())

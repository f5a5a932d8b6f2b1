"""Benchmarks: decoding, serving (and its observability cost), the pipeline, incremental updates, program evaluation.

`python -m bench` (or `make bench`) runs them all and writes `bench/results.md` plus PNG plots in `bench/out/`.
"""

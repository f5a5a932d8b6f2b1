"""Benchmarks for issue 7: decoding, serving, the pipeline, incremental updates and program evaluation.

`python -m bench` (or `make bench`) runs them all and writes `bench/results.md` plus PNG plots in `bench/out/`.
"""

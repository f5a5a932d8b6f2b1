"""The incremental chain (issue 32): Pachyderm's datums do the work, as data like pipelines/specs.py.

raw_data --(glob /*: one datum per raw file)--> split --(glob /: the reduce)--> vocabulary
split (glob /*: one datum per shard) x vocabulary (glob /vocab) --> pre_process, on `parallelism` workers
pre_process (glob /) x vocabulary (glob /vocab) --> train (updates its previous output commit) --> build --> export

Pachyderm processes only datums it has not processed with the same inputs and spec, so a new raw file costs one
split datum, one encoded shard, a vocabulary fit (whose `vocab/` stays byte-identical until it drifts) and a
warm-started train. vocabulary, train and build read their own previous output commit from pachd
(issue_titles.previous; transform.env ISSUE_TITLES_PREVIOUS_OUTPUT): a pipeline may not take its own repo as input.
build reads only the previous bundle's provenance.json, whose decoding choice an updated model reuses.
"""

from __future__ import annotations

from pipelines.contract import PREVIOUS_FILES_ENV, PREVIOUS_OUTPUT_ENV, PREVIOUS_OUTPUT_REQUEST, PROVENANCE
from pipelines.settings import PipelineSettings
from pipelines.specs import RAW_DATA_REPO, Spec, export, pfs, split_cmd, step_spec
from pipelines.specs import build as whole_build
from pipelines.specs import train as whole_train

ASK_FOR_PREVIOUS_OUTPUT = {PREVIOUS_OUTPUT_ENV: PREVIOUS_OUTPUT_REQUEST}
VOCAB_GLOB = "/vocab"


def split(settings: PipelineSettings) -> Spec:
    cmd = split_cmd(settings, "--layout", "shards")
    return step_spec(
        "split",
        "One datum per raw file (glob /*): each row goes to train, test or the held-out "
        "repositories by a stable hash of its issue_url, into /pfs/out/<raw file>/.",
        settings,
        pfs(RAW_DATA_REPO, "/*"),
        cmd,
    )


def vocabulary(settings: PipelineSettings) -> Spec:
    cmd = ["stages", "vocabulary", "--input", "/pfs/split", "--output", "/pfs/out"]
    spec = step_spec(
        "vocabulary",
        "The reduce: fit the vocabularies on every shard; keep the previous vocab/ byte for "
        "byte while it has not drifted past the threshold.",
        settings,
        pfs("split"),
        cmd,
    )
    spec["transform"]["env"] = dict(ASK_FOR_PREVIOUS_OUTPUT)
    return spec


def pre_process(settings: PipelineSettings) -> Spec:
    cmd = ["stages", "pre_process", "--input", "/pfs/split", "--vocabulary", "/pfs/vocabulary", "--output", "/pfs/out"]
    spec = step_spec(
        "pre_process",
        "Encode each split shard with the vocabulary (one datum per shard, in parallel).",
        settings,
        {"cross": [pfs("split", "/*"), pfs("vocabulary", VOCAB_GLOB)]},
        cmd,
    )
    spec["parallelismSpec"] = {"constant": settings.parallelism}
    # Encoding one shard is light: two workers at half a CPU each request what the one whole-repo worker did.
    spec["resourceRequests"] = {"cpu": 0.5, "memory": "1Gi"}
    return spec


def train(settings: PipelineSettings) -> Spec:
    spec = whole_train(settings)
    cmd = spec["transform"]["cmd"]
    at = cmd.index("--output")
    cmd[at:at] = ["--vocabulary", "/pfs/vocabulary"]
    if settings.full_retrain:
        cmd.append("--full")
    spec["description"] = (
        "Train the title model: warm-start from the previous output commit and fine-tune on the "
        "new rows plus a replay sample while the vocabulary and settings are unchanged; else "
        "from scratch."
    )
    spec["input"] = {"cross": [pfs("pre_process"), pfs("vocabulary", VOCAB_GLOB)]}
    spec["transform"]["env"] = dict(ASK_FOR_PREVIOUS_OUTPUT)
    return spec


def build(settings: PipelineSettings) -> Spec:
    spec = whole_build(settings)
    # the previous bundle's provenance.json: an updated model reuses its decoding choice (issue_titles.evaluate);
    # the worker reads only that file of the commit, not the bundle's weights
    spec["transform"]["env"] = ASK_FOR_PREVIOUS_OUTPUT | {PREVIOUS_FILES_ENV: PROVENANCE}
    return spec


def incremental_pipelines(settings: PipelineSettings) -> list[Spec]:
    """split -> vocabulary -> pre_process -> train -> build -> export, upstream first."""
    return [step(settings) for step in (split, vocabulary, pre_process, train, build, export)]

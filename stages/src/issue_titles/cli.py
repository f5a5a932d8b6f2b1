"""`stages`: one subcommand per pipeline step, plus predict and serve. A thin edge over the stage functions.

Every failure the user can fix is one line on stderr naming the file (and line) and a non-zero exit:
2 bad input or arguments (a refused --output included), 3 quality gate refused, 4 bundle changed after build,
5 export could not push in a cluster, 6 the training's TFJob failed (launch-tfjob), 141 stdout closed before the
report was printed (the output is complete; 128 + SIGPIPE, as a shell reports a process a closed pipe stopped),
1 anything unexpected.
"""

import argparse
import contextlib
import errno
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from issue_titles import __version__
from issue_titles.contract import SERVING_PORT, STAGE_UID
from issue_titles.errors import StageError
from issue_titles.limits import TRAINING_RANGES

if TYPE_CHECKING:
    from issue_titles.tfjob import ReplicaSpec


def _whole_number(text: str, least: int, most: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    if most is not None and value > most:
        raise argparse.ArgumentTypeError(f"must be at most {most:,}, got {value:,}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _bounded_int(least: int, most: int | None):
    """A whole number from `least` to `most`: the bounds keep a typo from becoming pages of out-of-memory output."""

    def parse(text: str) -> int:
        return _whole_number(text, least, most)

    parse.__name__ = f"whole number from {least} to {most}" if most is not None else f"whole number from {least}"
    return parse


def _training_int(knob: str):
    """A whole number in the training knob's range (issue_titles.limits, the pipelines' too)."""
    return _bounded_int(*TRAINING_RANGES[knob])


def _span(knob: str) -> str:
    least, most = TRAINING_RANGES[knob]
    return f"{least} to {most:,}" if most is not None else f"{least} or more"


def _finite(text: str) -> float:
    """A float that is a number: `nan` and `inf` parse as floats but train to NaN or hang a schedule."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got '{text}'")
    return value


def _fraction(text: str) -> float:
    value = _finite(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value}")
    return value


def _probability(text: str) -> float:
    value = _finite(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 up to (not including) 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got '{text}'") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, got {value}")
    return value


def _host(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give an address such as 127.0.0.1 (0.0.0.0: every interface)")
    return text


class _Once(argparse.Action):
    """A single-valued option given twice is refused: argparse would silently keep the last one."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen: set[str] = getattr(namespace, "_given_once", set())
        if self.dest in seen:
            parser.error(f"argument {option_string}: given more than once; this step takes one")
        namespace._given_once = seen | {self.dest}
        setattr(namespace, self.dest, values)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default as a user types it (never `None` or `False`); options whose
    default depends on something else say so in their help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or "default" in text
            or any(action.default is skip for skip in (None, False))
            or action.default == argparse.SUPPRESS
        ):
            return text
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        return f"{text} (default: %(default)s)".strip()


# issue_titles.predictor's DEFAULT_BEAM_WIDTH, DEFAULT_LENGTH_PENALTY, DEFAULT_COPY_BIAS, as --help shows them
# (importing the predictor would load TensorFlow for `--help`; a test keeps the two equal).
DECODING_DEFAULTS_SHOWN = (2, 2.0, 1.6)

# Upper bounds of the size arguments (inclusive); documented in stages/README.md "Limits".
MAX_VOCAB_SIZE = 1_000_000
MAX_BODY_LENGTH = 2_000  # tokens; bodies are cut at text.MAX_CHARS (20,000 characters) before tokenising anyway
MAX_TITLE_LENGTH = 200
MAX_TRIGRAMS_PER_TOKEN = 64
MAX_TRIGRAM_BUCKETS = 32_767  # ids are stored as int16
# epochs, batch size, embedding and hidden sizes: issue_titles.limits.TRAINING_RANGES
MAX_BEAM_WIDTH = 64
MAX_PREDICT_BATCH = 8_192


def _repositories(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if name.count("/") != 1 or name.startswith("/") or name.endswith("/"):
            raise argparse.ArgumentTypeError(f"'{name}' is not OWNER/NAME")
    return names


def _decoding_arguments(command: argparse.ArgumentParser) -> None:
    """--beam-width, --length-penalty and --copy-bias, for every command that writes titles (None: the defaults)."""
    DEFAULT_BEAM_WIDTH, DEFAULT_LENGTH_PENALTY, DEFAULT_COPY_BIAS = DECODING_DEFAULTS_SHOWN

    command.add_argument("--beam-width", type=_bounded_int(1, MAX_BEAM_WIDTH), default=None,
                         help=f"hypotheses kept per body while decoding, 1 to {MAX_BEAM_WIDTH}; 1 is greedy "
                         f"(default: {DEFAULT_BEAM_WIDTH})")  # fmt: skip
    command.add_argument("--length-penalty", type=_non_negative_float, default=None,
                         help="GNMT length penalty alpha for beam search; 0 ranks by plain log-probability "
                         f"(default: {DEFAULT_LENGTH_PENALTY})")  # fmt: skip
    command.add_argument("--copy-bias", type=_positive_float, default=None, metavar="F",
                         help="multiply the copy switch's odds by F at every step: above 1 copies more body words, 1 "
                         f"decodes as trained (default: {DEFAULT_COPY_BIAS} for the default architecture; the "
                         "tutorial's model does not copy)")  # fmt: skip


SERVE_DESCRIPTION = """Serve a bundle (what `stages build` writes) over HTTP with MLServer until SIGTERM or Ctrl-C.

Endpoints (on --port):
  POST /api/v1.0/predictions, /api/v0.1/predictions, /predict   Seldon protocol: {"data":{"ndarray":[["<body>"]]}}
  POST /v2/models/issue-summarization/infer                     V2 (Open Inference) protocol, JSON or binary tensors
  GET  /v2/health/live, /v2/health/ready, /health/status         liveness / readiness
  GET  /v2/models/issue-summarization, /api/v1.0/metadata/issue-summarization   model metadata (job ID, data)
  GET  /v2/models/issue-summarization/model-card                 the bundle's MODEL_CARD.md
  GET  /metrics on --metrics-port                                Prometheus metrics (MLServer's)

Limits come from environment variables (defaults in parentheses; see issue_titles/serving/README.md):
  ISSUE_TITLES_MAX_REQUEST_BYTES (4194304)   ISSUE_TITLES_MAX_BATCH_BODIES (512)
  ISSUE_TITLES_MAX_BODY_CHARS (100000)       ISSUE_TITLES_ADAPTIVE_BATCH_SIZE (16)
  ISSUE_TITLES_ADAPTIVE_BATCH_TIME (0.001 s) ISSUE_TITLES_BODY_TIMEOUT (30 s)
  ISSUE_TITLES_HEADER_TIMEOUT (10 s)         ISSUE_TITLES_IDLE_TIMEOUT (5 s)
  ISSUE_TITLES_MAX_CONNECTIONS (512)
A bad value is refused at start with one line naming the variable (exit 2). A bundle whose files changed since
build is refused (exit 4). On SIGTERM, requests in flight get 3 s to finish, then a JSON 503."""


def _add_text_options(parser: argparse.ArgumentParser, text_defaults: Any) -> None:
    """The vocabulary and encoding sizes: one set for pre_process and for the incremental chain's vocabulary step."""
    parser.add_argument(
        "--body-vocab-size",
        type=_bounded_int(2, MAX_VOCAB_SIZE),
        default=text_defaults.body_vocab_size,
        help=f"body words kept, 2 to {MAX_VOCAB_SIZE:,}",
    )
    parser.add_argument(
        "--body-length",
        type=_bounded_int(1, MAX_BODY_LENGTH),
        default=text_defaults.body_length,
        help=f"body tokens the model reads, 1 to {MAX_BODY_LENGTH:,}",
    )
    parser.add_argument(
        "--title-vocab-size",
        type=_bounded_int(2, MAX_VOCAB_SIZE),
        default=text_defaults.title_vocab_size,
        help=f"title words kept, 2 to {MAX_VOCAB_SIZE:,}",
    )
    parser.add_argument(
        "--title-length",
        type=_bounded_int(3, MAX_TITLE_LENGTH),
        default=text_defaults.title_length,
        help=f"title tokens including the start and end markers, 3 to {MAX_TITLE_LENGTH}",
    )
    parser.add_argument(
        "--trigrams-per-token",
        type=_bounded_int(0, MAX_TRIGRAMS_PER_TOKEN),
        default=text_defaults.trigrams_per_token,
        help=f"hashed character trigrams of each body token the encoder also reads, 0 (none) to "
        f"{MAX_TRIGRAMS_PER_TOKEN}",
    )
    parser.add_argument(
        "--trigram-buckets",
        type=_bounded_int(2, MAX_TRIGRAM_BUCKETS),
        default=text_defaults.trigram_buckets,
        help=f"trigram ids are hashed into this many buckets, 2 to {MAX_TRIGRAM_BUCKETS:,}",
    )


def build_parser() -> argparse.ArgumentParser:
    from issue_titles.serving.options import add_observability_options
    from issue_titles.text import TextConfig
    from issue_titles.vocabulary import DRIFT_THRESHOLD

    text_defaults = TextConfig()
    parser = argparse.ArgumentParser(
        prog="stages",
        description="Issue-title model: pipeline steps (folders in, one folder out), predict, serve.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, summary: str, description: str | None = None, **kwargs) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=description or summary,
            formatter_class=kwargs.pop("formatter_class", HelpFormatter),
            **kwargs,
        )

    split = add(
        "split",
        "clean the raw CSVs and cut them into train.csv and test.csv",
        "Read every *.csv and *.csv.gz of --input, skip and count malformed rows, and write train.csv, "
        "test.csv, heldout.csv and report.json into --output (atomically).",
    )
    split.add_argument(
        "--input", type=Path, required=True, action=_Once, help="folder with *.csv (issue_url,issue_title,body)"
    )
    split.add_argument(
        "--output", type=Path, required=True, action=_Once, help="folder to write train.csv, test.csv, report.json"
    )
    split.add_argument(
        "--sample-size",
        type=_training_int("sample_size"),
        default=None,
        help=f"keep this many rows, {_span('sample_size')} (default: all)",
    )
    split.add_argument("--test-fraction", type=_fraction, default=0.1, help="share of rows for test")
    split.add_argument("--seed", type=int, default=42, help="shuffle seed")
    split.add_argument(
        "--heldout-repos",
        type=_repositories,
        default=None,
        metavar="OWNER/NAME,...",
        help="repositories kept out of training, written to heldout.csv (default: "
        "issue_titles.split.HELDOUT_REPOSITORIES; '' for none)",
    )
    split.add_argument(
        "--layout",
        choices=("flat", "shards"),
        default="flat",
        help="flat: one train/test/heldout.csv for all rows (shuffled); shards: one folder per raw "
        "file, rows assigned by a stable hash of issue_url (Pachyderm glob /*)",
    )
    split.add_argument(
        "--sample-fraction",
        type=_fraction,
        default=None,
        help="shards layout: keep this share of every file, chosen per row by a seeded hash (default: every row)",
    )

    vocabulary = add(
        "vocabulary",
        "fit the vocabularies on every split shard; keep the previous ones byte for byte while they have not drifted",
        "The incremental chain's reduce step: fit the body and title vocabularies on every shard of a "
        "sharded split, and write the previous vocabularies unchanged (byte for byte, so Pachyderm skips "
        "every unchanged shard downstream) while the new ones have not drifted past --drift-threshold.",
    )
    vocabulary.add_argument("--input", type=Path, required=True, action=_Once, help="a sharded split output")
    vocabulary.add_argument("--output", type=Path, required=True, action=_Once, help="folder to write")
    vocabulary.add_argument(
        "--previous",
        type=Path,
        default=None,
        action=_Once,
        help="a former output of this step (default: the pipeline's previous output commit "
        "when the spec asks for it, else none)",
    )
    vocabulary.add_argument(
        "--drift-threshold",
        type=_probability,
        default=DRIFT_THRESHOLD,
        help="largest drift (share of token mass the new vocabulary covers and the previous one "
        "misses) that keeps the previous vocabulary",
    )
    _add_text_options(vocabulary, text_defaults)

    pre = add(
        "pre_process",
        "fit vocabularies on train.csv and encode it as arrays",
        "Fit the body and title vocabularies on the split's train.csv and write them with the encoded arrays "
        "into --output.",
    )
    pre.add_argument("--input", type=Path, required=True, action=_Once, help="the split output (train.csv)")
    pre.add_argument("--output", type=Path, required=True, action=_Once, help="folder to write")
    pre.add_argument(
        "--vocabulary",
        type=Path,
        default=None,
        action=_Once,
        help="the vocabulary step's output: encode every split shard with it (one folder per shard) "
        "instead of fitting vocabularies here (default: fit them here)",
    )
    _add_text_options(pre, text_defaults)

    train = add(
        "train",
        "train the title model (defaults depend on --architecture)",
        "Train the title model on the pre_process output and write its weights, model.json and "
        "history.csv into --output. stdout holds only the JSON report; progress goes to stderr.",
    )
    train.add_argument("--input", type=Path, required=True, action=_Once, help="the pre_process output")
    train.add_argument("--output", type=Path, required=True, action=_Once, help="folder to write")
    train.add_argument("--architecture", default="default",
                       help="'default' (attention + copying, pointer_generator) or 'tutorial'")  # fmt: skip
    train.add_argument(
        "--epochs",
        type=_training_int("epochs"),
        default=None,
        help=f"maximum epochs, {_span('epochs')} (default: 4 for pointer_generator, 7 for tutorial)",
    )
    train.add_argument(
        "--batch-size",
        type=_training_int("batch_size"),
        default=None,
        help=f"{_span('batch_size')} (default: the architecture's)",
    )
    train.add_argument(
        "--learning-rate", type=_positive_float, default=None, help="a finite number > 0 (default: the architecture's)"
    )
    train.add_argument(
        "--embedding-dim",
        type=_training_int("embedding_dim"),
        default=None,
        help=f"{_span('embedding_dim')} (default: the architecture's)",
    )
    train.add_argument(
        "--hidden-dim",
        type=_training_int("hidden_dim"),
        default=None,
        help=f"{_span('hidden_dim')} (default: the architecture's)",
    )
    train.add_argument("--dropout", type=_probability, default=None, help="0 up to 1 (default: the architecture's)")
    train.add_argument("--patience", type=_positive_int, default=None,
                       help="stop after this many epochs without a better validation loss (default: the "
                            "architecture's)")  # fmt: skip
    train.add_argument(
        "--encoder",
        choices=("bigru", "transformer"),
        default=None,
        help="pointer_generator's body encoder (default: bigru)",
    )
    train.add_argument(
        "--schedule",
        choices=("constant", "cosine"),
        default=None,
        help="learning-rate schedule (default: cosine for pointer_generator, constant for tutorial)",
    )
    train.add_argument(
        "--precision",
        choices=("auto", "float32", "mixed"),
        default="auto",
        help="auto (default): mixed float16 on a GPU for pointer_generator, float32 otherwise",
    )
    train.add_argument(
        "--label-smoothing",
        type=_probability,
        default=None,
        help="share of the loss spread over the title vocabulary (default: 0.1 for pointer_generator, 0 for tutorial)",
    )
    train.add_argument(
        "--average-steps",
        type=_non_negative_int,
        default=None,
        metavar="STEPS",
        help="save the weights' moving average over about this many last steps, at most a third of "
        "the training (default: 500 for pointer_generator; 0: the best epoch's, as the tutorial)",
    )
    train.add_argument(
        "--word-dropout",
        type=_probability,
        default=None,
        help="in training, a body word enters the encoder as unknown with this probability "
        "(pointer_generator only; default: 0; 0.25 with --trigrams-per-token in stages/README)",
    )
    train.add_argument("--validation-split", type=_fraction, default=0.12, help="share of rows held for validation")
    train.add_argument(
        "--max-minutes",
        type=_positive_float,
        default=None,
        help="stop after the epoch that passes this (default: no limit)",
    )
    train.add_argument("--seed", type=int, default=42, help="random seed")
    train.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        action=_Once,
        help="train data-parallel as this many processes on 127.0.0.1, each with the TF_CONFIG a TFJob "
        "replica gets (MultiWorkerMirroredStrategy; worker 0 writes the output); the global batch "
        "size stays --batch-size",
    )
    train.add_argument(
        "--from-s3",
        metavar="BUCKET",
        default=None,
        action=_Once,
        help="first copy this bucket of the S3 gateway at $S3_ENDPOINT into --input (a TFJob replica "
        "reading an S3-enabled pipeline's input; default: read --input as it is)",
    )
    train.add_argument(
        "--to-s3",
        metavar="BUCKET",
        default=None,
        action=_Once,
        help="then put --output into this bucket (the chief only; `out` is the pipeline's output "
        "commit; default: --output only)",
    )
    train.add_argument(
        "--vocabulary",
        type=Path,
        default=None,
        action=_Once,
        help="the vocabulary step's output: --input is then the encoded shards, and train updates the "
        "previous model when it can (issue_titles.incremental; default: a whole training)",
    )
    train.add_argument(
        "--previous",
        type=Path,
        default=None,
        action=_Once,
        help="with --vocabulary: a former train output to update (default: the pipeline's previous "
        "output commit when the spec asks for it)",
    )
    train.add_argument(
        "--full",
        action="store_true",
        help="with --vocabulary: retrain from scratch (default: update the previous model when it can)",
    )
    # The defaults are UpdateSettings' (issue_titles.incremental, imported only when training).
    train.add_argument("--update-epochs", type=_positive_int, default=None, help="epochs of an update (default 1)")
    train.add_argument(
        "--update-lr-scale",
        type=_fraction,
        default=None,
        help="an update's peak learning rate as a share of the full training's (default 0.1)",
    )
    train.add_argument(
        "--replay-factor",
        type=_non_negative_float,
        default=None,
        help="old rows replayed per new row in an update (default 4)",
    )
    train.add_argument(
        "--min-replay", type=_non_negative_int, default=None, help="old rows replayed at least (default 1000)"
    )
    train.add_argument(
        "--max-updates",
        type=_positive_int,
        default=None,
        help="updates in a row after which the next training is a full one (default 10)",
    )

    evaluate = add(
        "evaluate",
        "score a model on test.csv and heldout.csv against the extractive baselines",
        "Score a model (train output or bundle) on the split's test.csv and heldout.csv, with the "
        "extractive baselines side by side; write metrics.json into --output.",
    )
    evaluate.add_argument("--model", type=Path, required=True, action=_Once, help="a train output or a bundle")
    evaluate.add_argument("--input", type=Path, required=True, action=_Once, help="the split output (test.csv)")
    evaluate.add_argument("--output", type=Path, required=True, action=_Once, help="folder to write metrics.json")
    _decoding_arguments(evaluate)

    build = add(
        "build",
        "evaluate, apply the quality gate, write the serving bundle",
        "Evaluate the train output on the split output, refuse a model the quality gate rejects (exit 3), "
        "and write the serving bundle with provenance.json into --output.",
    )
    build.add_argument("--input", type=Path, action="append", required=True,
                       help="the train output and the split output: exactly two --input, any order")  # fmt: skip
    build.add_argument("--output", type=Path, required=True, action=_Once, help="folder to write the bundle")
    build.add_argument("--min-rouge-l", type=_non_negative_float, default=0.0,
                       help="also refuse models below this ROUGE-L (0: only the baseline gate)")  # fmt: skip
    build.add_argument("--allow-below-baseline", action="store_true",
                       help="build even a model that does not beat the best extractive baseline on ROUGE-L "
                       "(refused by default)")  # fmt: skip
    build.add_argument(
        "--base-image",
        default=None,
        help="the stage image the serving image starts FROM (default: issue-titles-stages:latest)",
    )
    build.add_argument(
        "--previous",
        type=Path,
        default=None,
        action=_Once,
        help="a former bundle whose decoding choice an updated model may reuse (default: the pipeline's previous "
        "output commit, when its spec asks for it)",
    )
    _decoding_arguments(build)

    export = add(
        "export",
        "push the serving image (stage image + bundle layer) through the registry API, in a cluster",
        "Push the serving image (the stage image plus a layer with the bundle) through the registry API "
        "and write image.json into --output; runs in a cluster.",
    )
    export.add_argument("--input", type=Path, required=True, action=_Once, help="the build output (bundle)")
    export.add_argument("--output", type=Path, required=True, action=_Once, help="folder to write image.json")
    export.add_argument(
        "--image", required=True, action=_Once, help="REPO or REPO:TAG; without a tag, PACH_JOB_ID is the tag"
    )

    predict = add(
        "predict",
        "write a title for every body of a CSV",
        "Write --output: every column and row of --input, plus predicted_title (an empty body gets an "
        "empty title and is counted).",
    )
    predict.add_argument("--model", type=Path, required=True, action=_Once, help="a bundle or train output")
    predict.add_argument("--input", type=Path, required=True, action=_Once, help="CSV with a 'body' column")
    predict.add_argument(
        "--output", type=Path, required=True, action=_Once, help="CSV to write (input columns + predicted_title)"
    )
    predict.add_argument(
        "--batch-size",
        type=_bounded_int(1, MAX_PREDICT_BATCH),
        default=512,
        help=f"bodies per model call, 1 to {MAX_PREDICT_BATCH:,}",
    )
    _decoding_arguments(predict)

    launch = add(
        "launch-tfjob",
        "run `stages train` as a TFJob (the train pipeline's command with trainer tfjob)",
        "The train pipeline's command with trainer tfjob: run `stages train` as a TFJob (one replica or "
        "several, data-parallel) through the pipeline's S3 gateway, follow it, delete it; without a "
        "Kubernetes API (localpach), run the replicas as local processes.",
    )
    launch.add_argument("--image", required=True, help="the stage image every replica runs")
    launch.add_argument("--workers", type=_positive_int, default=1, help="Worker replicas (1: no TF_CONFIG)")
    launch.add_argument("--gpus", type=_non_negative_int, default=0, help="GPUs per replica")
    launch.add_argument("--cpu-request", default="1", help="each replica's CPU request")
    launch.add_argument("--memory-request", default="4Gi", help="each replica's memory request")
    launch.add_argument("--cpu-limit", default="4", help="each replica's CPU limit")
    launch.add_argument("--memory-limit", default="12Gi", help="each replica's memory limit")
    launch.add_argument("--run-as-user", type=_positive_int, default=STAGE_UID, help="the image's non-root user")
    launch.add_argument(
        "--image-pull-secret", default=None, help="the registry Secret the replicas pull with (default: none)"
    )
    launch.add_argument("--input-bucket", default="pre_process", help="the S3-enabled input's name")
    launch.add_argument(
        "--poll-seconds", type=_positive_float, default=10.0, help="how often the TFJob's status is read"
    )
    launch.add_argument(
        "--timeout-minutes",
        type=_positive_float,
        default=None,
        help="give up on the TFJob after this long (default: no limit)",
    )
    launch.add_argument(
        "--local-input",
        type=Path,
        default=None,
        help="without a Kubernetes API (localpach): the folder the replicas train on (default: none)",
    )
    launch.add_argument(
        "--local-output", type=Path, default=None, help="... and the folder the model goes to (default: none)"
    )
    launch.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then the `stages train` flags")

    serve = add(
        "serve", "serve a bundle over HTTP with MLServer", SERVE_DESCRIPTION, formatter_class=_RawDescriptionDefaults
    )
    serve.add_argument(
        "--model", type=Path, required=True, action=_Once, help="the bundle folder (what `stages build` writes)"
    )
    serve.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 for every interface (the serving image's)",
    )
    serve.add_argument("--port", type=_port, default=SERVING_PORT, help="HTTP port, 1 to 65535")
    add_observability_options(serve, _port)
    return parser


class _RawDescriptionDefaults(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the options' help, the description's layout (endpoint and variable lists) kept."""


class StdoutClosed(Exception):
    """The reader of stdout went away (`stages split ... | head`): the step's work is done, its report is lost."""


def _report(result: dict) -> None:
    try:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        sys.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's last flush at exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


# Each step's input arguments: its --output may not be, contain or lie inside any of them.
STEP_INPUTS = {"split": ("input",), "vocabulary": ("input",), "pre_process": ("input",), "train": ("input",),
               "evaluate": ("model", "input"), "build": ("input",), "export": ("input",),
               "predict": ("model", "input")}  # fmt: skip


def check_output(args: argparse.Namespace) -> None:
    """Refuse a dangerous --output before the step spends any time (the step checks again when it writes)."""
    from issue_titles.atomic import check_output_dir, check_output_file

    if args.command not in STEP_INPUTS:
        return
    inputs: list[Path] = []
    for name in STEP_INPUTS[args.command]:
        value = getattr(args, name)
        inputs.extend(value if isinstance(value, list) else [value])
    if args.command == "predict":
        check_output_file(args.output, "predict", inputs, header_ends_with="predicted_title")
    else:
        check_output_dir(args.output, args.command, inputs)


def _decoding(args: argparse.Namespace) -> dict:
    return {"beam_width": args.beam_width, "length_penalty": args.length_penalty, "copy_bias": args.copy_bias}


def _without_workers(argv: Sequence[str]) -> list[str]:
    """The train arguments each local worker runs: the same, less --workers (each is one worker of the cluster)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send whatever is written to stdout (Python's sys.stdout and file descriptor 1) to stderr meanwhile."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 at all: redirecting the Python stream is all there is to do
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


NAME_MAX, PATH_MAX = 255, 4096  # Linux's limits on one name and a whole path, in bytes


def check_paths(args: argparse.Namespace) -> None:
    """Every path argument must be one the file system can look up: a name over 255 bytes, a path over PATH_MAX or
    a symlink loop is one line naming it, before the step starts (not an "unexpected error" later)."""
    for name in ("input", "output", "model"):
        value = getattr(args, name, None)
        for path in value if isinstance(value, list) else [value]:
            if path is None:
                continue
            longest = max((len(os.fsencode(part)) for part in Path(path).parts), default=0)
            if longest > NAME_MAX or len(os.fsencode(str(path))) > PATH_MAX:
                raise StageError(f"--{name}: File name too long (at most {NAME_MAX} bytes per name, {PATH_MAX} in all)",
                                 path=_short(path))  # fmt: skip
            try:
                os.stat(path)
            except FileNotFoundError:
                continue  # a new --output, or an input the step names itself
            except OSError as error:
                if error.errno in (errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EACCES):
                    raise StageError(f"--{name}: {error.strerror}", path=_short(path)) from None
                raise


def _short(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}...{text[-40:]} ({len(text)} characters)"


def _text_config(args: argparse.Namespace) -> Any:
    """The text preparation --body-vocab-size ... --trigram-buckets describe (vocabulary, pre_process)."""
    from issue_titles.text import TextConfig

    return TextConfig(
        args.body_vocab_size,
        args.body_length,
        args.title_vocab_size,
        args.title_length,
        trigrams_per_token=args.trigrams_per_token,
        trigram_buckets=args.trigram_buckets,
    )


def _split(args: argparse.Namespace) -> None:
    if args.layout == "shards":
        _split_shards(args)
        return
    from issue_titles.split import SplitSettings, run_split

    settings = SplitSettings(args.sample_size, args.test_fraction, args.seed)
    if args.heldout_repos is not None:
        settings = replace(settings, heldout_repositories=args.heldout_repos)
    report = run_split(args.input, args.output, settings)
    keys = ("rows_read", "rows_kept", "skipped", "train_rows", "test_rows", "heldout_rows")
    _report({key: report[key] for key in keys})


def _split_shards(args: argparse.Namespace) -> None:
    from issue_titles.shards import ShardSettings, run_split_shards

    shard_settings = ShardSettings(args.test_fraction, args.seed, args.sample_fraction, args.sample_size)
    if args.heldout_repos is not None:
        shard_settings = replace(shard_settings, heldout_repositories=args.heldout_repos)
    _report(run_split_shards(args.input, args.output, shard_settings))


def _vocabulary(args: argparse.Namespace) -> None:
    import tempfile

    from issue_titles.previous import previous_output
    from issue_titles.vocabulary import DRIFT_THRESHOLD, run_vocabulary

    config = _text_config(args)
    threshold = DRIFT_THRESHOLD if args.drift_threshold is None else args.drift_threshold
    with tempfile.TemporaryDirectory(prefix="vocabulary-previous-") as scratch:  # what pachd sends is read once
        previous = args.previous or previous_output(Path(scratch) / "previous")[0]
        _report(run_vocabulary(args.input, args.output, config, previous, threshold))


def _pre_process(args: argparse.Namespace) -> None:
    if args.vocabulary is not None:
        from issue_titles.encode import run_encode_shards

        _report(run_encode_shards(args.input, args.vocabulary, args.output))
        return
    from issue_titles.preprocess import run_preprocess

    _report(run_preprocess(args.input, args.output, _text_config(args)))


def _train(args: argparse.Namespace) -> None:
    if args.workers > 1:
        _train_workers(args)
        return
    if not args.from_s3 and args.vocabulary is None:
        from issue_titles.contract import PREPROCESS
        from issue_titles.jsonio import read_json

        # load_training_data's first read, before TensorFlow's import: a missing or broken pre_process output is
        # refused with the same error in a fraction of a second, not after seconds of CPU (in each worker of
        # --workers N, whose failure then stops the others sooner).
        read_json(args.input / PREPROCESS)
    from issue_titles.train import TrainSettings, run_train

    endpoint: Any = None
    credentials: Any = None
    if args.from_s3 or args.to_s3:
        from issue_titles.s3io import credentials_from_env, download_bucket, endpoint_from_env, upload_folder

        endpoint, credentials = endpoint_from_env(), credentials_from_env()  # signed when the env has keys
    if args.from_s3:
        keys = download_bucket(endpoint, args.from_s3, args.input, credentials)
        print(f"input: {len(keys)} files from s3://{args.from_s3}", file=sys.stderr)

    settings = TrainSettings(
        architecture=args.architecture, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, embedding_dim=args.embedding_dim, hidden_dim=args.hidden_dim,
        dropout=args.dropout, patience=args.patience, encoder=args.encoder, schedule=args.schedule,
        label_smoothing=args.label_smoothing, average_steps=args.average_steps, precision=args.precision,
        word_dropout=args.word_dropout,
        validation_split=args.validation_split,
        max_minutes=args.max_minutes, seed=args.seed,
    )  # fmt: skip
    with _stdout_to_stderr():  # Keras' progress lines: stdout holds only the JSON report, as for every step
        if args.vocabulary is not None:
            from issue_titles.incremental import UpdateSettings, run_train_incremental

            given = {
                "epochs": args.update_epochs,
                "learning_rate_scale": args.update_lr_scale,
                "replay_factor": args.replay_factor,
                "min_replay": args.min_replay,
                "max_updates": args.max_updates,
            }
            update = UpdateSettings(full=args.full, **{key: value for key, value in given.items() if value is not None})
            trained = run_train_incremental(args.input, args.vocabulary, args.output, settings, update, args.previous)
        else:
            trained = run_train(args.input, args.output, settings)
    from issue_titles.distributed import replica_from_env

    if args.to_s3 and replica_from_env().is_chief:  # only the chief writes an output
        keys = upload_folder(endpoint, args.output, args.to_s3, credentials)
        print(f"output: {len(keys)} files to s3://{args.to_s3}", file=sys.stderr)
    report = trained["training"]
    if "lineage" in trained:
        report = report | {"lineage": {k: v for k, v in trained["lineage"].items() if k != "settings"}}
    _report(report)


def _train_workers(args: argparse.Namespace) -> None:
    from issue_titles.distributed import TF_CONFIG_ENV, run_local_workers

    if os.environ.get(TF_CONFIG_ENV):
        raise StageError(f"--workers starts its own cluster; unset {TF_CONFIG_ENV} (a TFJob replica runs one worker)")
    run_local_workers(_without_workers(sys.argv[1:] if args.argv is None else args.argv), args.workers)


def replica_spec(args: argparse.Namespace) -> "ReplicaSpec":
    """What `stages launch-tfjob`'s options say of the TFJob's replicas (tests render the stacks' TFJob with it)."""
    from issue_titles.tfjob import ReplicaSpec, split_train_args

    return ReplicaSpec(
        image=args.image,
        workers=args.workers,
        gpus=args.gpus,
        cpu_request=args.cpu_request,
        memory_request=args.memory_request,
        cpu_limit=args.cpu_limit,
        memory_limit=args.memory_limit,
        run_as_user=args.run_as_user,
        image_pull_secret=args.image_pull_secret,
        input_bucket=args.input_bucket,
        train_args=split_train_args(args.train_args),
    )


def _launch_tfjob(args: argparse.Namespace) -> None:
    from issue_titles.tfjob import run_launch

    spec = replica_spec(args)
    _report(
        run_launch(
            spec,
            local_input=args.local_input,
            local_output=args.local_output,
            poll_seconds=args.poll_seconds,
            timeout_seconds=args.timeout_minutes * 60 if args.timeout_minutes else None,
        )
    )


def _evaluate(args: argparse.Namespace) -> None:
    from issue_titles.evaluate import run_evaluate

    metrics = run_evaluate(args.model, args.input, args.output, **_decoding(args))
    summary = {key: metrics[key] for key in ("model", "lead_baseline", "test_rows")}
    if "heldout" in metrics:
        keys = ("rows", "model", "best_baseline", "margin_rouge_l")
        summary["heldout"] = {key: metrics["heldout"][key] for key in keys}
    _report(summary)


def _build(args: argparse.Namespace) -> None:
    from issue_titles.build import DEFAULT_BASE_IMAGE, run_build

    provenance = run_build(
        args.input,
        args.output,
        args.min_rouge_l,
        args.base_image or DEFAULT_BASE_IMAGE,
        beat_baseline=not args.allow_below_baseline,
        previous_dir=args.previous,
        **_decoding(args),
    )
    _report({key: provenance[key] for key in ("job_id", "inputs", "metrics", "code")})


def _export(args: argparse.Namespace) -> None:
    from issue_titles.export import run_export

    _report(run_export(args.input, args.output, args.image))


def _predict(args: argparse.Namespace) -> None:
    from issue_titles.predict import run_predict

    _report(run_predict(args.model, args.input, args.output, args.batch_size, **_decoding(args)))


def _serve(args: argparse.Namespace) -> None:
    from issue_titles.model_loading import check_bundle  # no TensorFlow yet: a refused bundle is refused at once

    check_bundle(args.model)  # a changed bundle exits 4 here, with one line, before any server starts
    try:
        from issue_titles.serving.server import serve
    except ImportError as error:
        raise StageError(f"serving is not installed ({error}); install issue-titles[serve]") from None
    serve(
        args.model,
        args.host,
        args.port,
        metrics_port=args.metrics_port,
        tracing_server=args.tracing_server,
        log_format=args.log_format,
        access_log=args.access_log,
    )


# Each subcommand's handler (what `add(...)` in build_parser declares); a step with variants (split --layout
# shards, pre_process --vocabulary, train --workers) picks its variant in its handler.
COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "split": _split,
    "vocabulary": _vocabulary,
    "pre_process": _pre_process,
    "train": _train,
    "launch-tfjob": _launch_tfjob,
    "evaluate": _evaluate,
    "build": _build,
    "export": _export,
    "predict": _predict,
    "serve": _serve,
}


def run(args: argparse.Namespace) -> None:
    check_paths(args)
    check_output(args)
    COMMANDS[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of step logs
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = None if argv is None else [str(arg) for arg in argv]
    try:
        run(args)
    except StageError as error:
        print(f"stages {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except StdoutClosed:
        _silence_stdout()
        output = getattr(args, "output", None)
        print(
            f"stages {args.command}: stdout was closed, so the report was not printed; the output {output} is complete",
            file=sys.stderr,
        )
        return 141
    except KeyboardInterrupt:
        print(f"stages {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if os.environ.get("STAGES_DEBUG"):
            raise
        print(
            f"stages {args.command}: unexpected error: {type(error).__name__}: {error} "
            "(set STAGES_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

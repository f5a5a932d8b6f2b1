"""`stages`: one subcommand per pipeline step, plus predict and serve. A thin edge over the stage functions.

Every failure the user can fix is one line on stderr naming the file (and line) and a non-zero exit:
2 bad input or arguments (a refused --output included), 3 quality gate refused, 4 bundle changed after build,
5 export could not push in a cluster, 141 stdout closed before the report was printed (the output is complete; 128 + SIGPIPE, as a shell reports a
process a closed pipe stopped), 1 anything unexpected.
"""

import argparse
import json
import os
import sys
from dataclasses import replace
from collections.abc import Sequence
from pathlib import Path

from issue_titles import __version__
from issue_titles.errors import StageError


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _repositories(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if name.count("/") != 1 or name.startswith("/") or name.endswith("/"):
            raise argparse.ArgumentTypeError(f"'{name}' is not OWNER/NAME")
    return names


def _decoding_arguments(command: argparse.ArgumentParser) -> None:
    """--beam-width, --length-penalty and --copy-bias, for every command that writes titles (None: the defaults)."""
    command.add_argument("--beam-width", type=_positive_int, default=None,
                         help="hypotheses kept per body while decoding; 1 is greedy (default: beam search, "
                         "issue_titles.predictor.DEFAULT_BEAM_WIDTH)")  # fmt: skip
    command.add_argument("--length-penalty", type=_non_negative_float, default=None,
                         help="GNMT length penalty alpha for beam search; 0 ranks by plain log-probability "
                         "(default: issue_titles.predictor.DEFAULT_LENGTH_PENALTY)")  # fmt: skip
    command.add_argument("--copy-bias", type=_positive_float, default=None, metavar="F",
                         help="multiply the copy switch's odds by F at every step: above 1 copies more body words, 1 "
                         "decodes as trained (default: issue_titles.predictor.DEFAULT_COPY_BIAS for the default "
                         "architecture; the tutorial's model does not copy)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from issue_titles.text import TextConfig

    text_defaults = TextConfig()
    parser = argparse.ArgumentParser(
        prog="stages", description="Issue-title model: pipeline steps (folders in, one folder out), predict, serve."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    split = commands.add_parser("split", help="clean the raw CSVs and cut them into train.csv and test.csv")
    split.add_argument("--input", type=Path, required=True, help="folder with *.csv (issue_url,issue_title,body)")
    split.add_argument("--output", type=Path, required=True, help="folder to write train.csv, test.csv, report.json")
    split.add_argument("--sample-size", type=_positive_int, default=None, help="keep this many rows (default: all)")
    split.add_argument("--test-fraction", type=_fraction, default=0.1, help="share of rows for test (default 0.1)")
    split.add_argument("--seed", type=int, default=42, help="shuffle seed (default 42)")
    split.add_argument("--heldout-repos", type=_repositories, default=None, metavar="OWNER/NAME,...",
                       help="repositories kept out of training, written to heldout.csv (default: "
                            "issue_titles.split.HELDOUT_REPOSITORIES; '' for none)")
    split.add_argument("--layout", choices=("flat", "shards"), default="flat",
                       help="flat: one train/test/heldout.csv for all rows (shuffled); shards: one folder per raw "
                            "file, rows assigned by a stable hash of issue_url (Pachyderm glob /*)")
    split.add_argument("--sample-fraction", type=_fraction, default=None,
                       help="shards layout: keep this share of every file, chosen per row by a seeded hash")

    vocabulary = commands.add_parser("vocabulary", help="fit the vocabularies on every split shard; keep the "
                                     "previous ones byte for byte while they have not drifted")
    vocabulary.add_argument("--input", type=Path, required=True, help="a sharded split output")
    vocabulary.add_argument("--output", type=Path, required=True)
    vocabulary.add_argument("--previous", type=Path, default=None,
                            help="a former output of this step (default: the pipeline's previous output commit "
                                 "when the spec asks for it, else none)")
    vocabulary.add_argument("--drift-threshold", type=float, default=None,
                            help="largest drift that keeps the previous vocabulary (default "
                                 "issue_titles.vocabulary.DRIFT_THRESHOLD)")
    vocabulary.add_argument("--body-vocab-size", type=_positive_int, default=text_defaults.body_vocab_size)
    vocabulary.add_argument("--body-length", type=_positive_int, default=text_defaults.body_length)
    vocabulary.add_argument("--title-vocab-size", type=_positive_int, default=text_defaults.title_vocab_size)
    vocabulary.add_argument("--title-length", type=_positive_int, default=text_defaults.title_length)
    vocabulary.add_argument("--trigrams-per-token", type=_non_negative_int, default=text_defaults.trigrams_per_token)
    vocabulary.add_argument("--trigram-buckets", type=_positive_int, default=text_defaults.trigram_buckets)

    pre = commands.add_parser("pre_process", help="fit vocabularies on train.csv and encode it as arrays")
    pre.add_argument("--input", type=Path, required=True, help="the split output (train.csv)")
    pre.add_argument("--output", type=Path, required=True)
    pre.add_argument("--vocabulary", type=Path, default=None,
                     help="the vocabulary step's output: encode every split shard with it (one folder per shard) "
                          "instead of fitting vocabularies here")
    pre.add_argument("--body-vocab-size", type=_positive_int, default=text_defaults.body_vocab_size)
    pre.add_argument("--body-length", type=_positive_int, default=text_defaults.body_length)
    pre.add_argument("--title-vocab-size", type=_positive_int, default=text_defaults.title_vocab_size)
    pre.add_argument("--title-length", type=_positive_int, default=text_defaults.title_length,
                     help="title tokens including the start and end markers")  # fmt: skip
    pre.add_argument("--trigrams-per-token", type=_non_negative_int, default=text_defaults.trigrams_per_token,
                     help="hashed character trigrams of each body token the encoder also reads (0: none)")
    pre.add_argument("--trigram-buckets", type=_positive_int, default=text_defaults.trigram_buckets,
                     help="trigram ids are hashed into this many buckets")  # fmt: skip

    train = commands.add_parser("train", help="train the title model (defaults depend on --architecture)")
    train.add_argument("--input", type=Path, required=True, help="the pre_process output")
    train.add_argument("--output", type=Path, required=True)
    train.add_argument("--architecture", default="default",
                       help="'default' (attention + copying, pointer_generator) or 'tutorial'")  # fmt: skip
    train.add_argument("--epochs", type=_positive_int, default=None, help="maximum epochs")
    train.add_argument("--batch-size", type=_positive_int, default=None)
    train.add_argument("--learning-rate", type=_positive_float, default=None)
    train.add_argument("--embedding-dim", type=_positive_int, default=None)
    train.add_argument("--hidden-dim", type=_positive_int, default=None)
    train.add_argument("--dropout", type=_non_negative_float, default=None)
    train.add_argument("--patience", type=_positive_int, default=None,
                       help="stop after this many epochs without a better validation loss")  # fmt: skip
    train.add_argument("--encoder", choices=("bigru", "transformer"), default=None,
                       help="pointer_generator's body encoder (default bigru)")
    train.add_argument("--schedule", choices=("constant", "cosine"), default=None,
                       help="learning-rate schedule (default: cosine for pointer_generator, constant for tutorial)")
    train.add_argument("--precision", choices=("auto", "float32", "mixed"), default="auto",
                       help="auto (default): mixed float16 on a GPU for pointer_generator, float32 otherwise")
    train.add_argument("--label-smoothing", type=_non_negative_float, default=None,
                       help="share of the loss spread over the title vocabulary "
                            "(default 0.1 for pointer_generator, 0 for tutorial)")
    train.add_argument("--average-steps", type=_non_negative_int, default=None, metavar="STEPS",
                       help="save the weights' moving average over about this many last steps, at most a third of "
                            "the training (default 500 for pointer_generator; 0: the best epoch's, as the tutorial)")
    train.add_argument("--word-dropout", type=_non_negative_float, default=None,
                       help="in training, a body word enters the encoder as unknown with this probability "
                            "(pointer_generator only; default 0; 0.25 with --trigrams-per-token in stages/README)")
    train.add_argument("--validation-split", type=_fraction, default=0.12)
    train.add_argument("--max-minutes", type=_positive_float, default=None, help="stop after the epoch that passes this")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--vocabulary", type=Path, default=None,
                       help="the vocabulary step's output: --input is then the encoded shards, and train updates the "
                            "previous model when it can (issue_titles.incremental)")
    train.add_argument("--previous", type=Path, default=None,
                       help="with --vocabulary: a former train output to update (default: the pipeline's previous "
                            "output commit when the spec asks for it)")
    train.add_argument("--full", action="store_true", help="with --vocabulary: retrain from scratch")
    train.add_argument("--update-epochs", type=_positive_int, default=1)
    train.add_argument("--update-lr-scale", type=_fraction, default=0.5)
    train.add_argument("--replay-factor", type=_non_negative_float, default=4.0)
    train.add_argument("--min-replay", type=_non_negative_int, default=1000)

    evaluate = commands.add_parser("evaluate", help="score a model on test.csv and heldout.csv against the extractive baselines")
    evaluate.add_argument("--model", type=Path, required=True, help="a train output or a bundle")
    evaluate.add_argument("--input", type=Path, required=True, help="the split output (test.csv)")
    evaluate.add_argument("--output", type=Path, required=True, help="folder to write metrics.json")
    _decoding_arguments(evaluate)

    build = commands.add_parser("build", help="evaluate, apply the quality gate, write the serving bundle")
    build.add_argument("--input", type=Path, action="append", required=True,
                       help="the train output and the split output (give --input twice, any order)")  # fmt: skip
    build.add_argument("--output", type=Path, required=True)
    build.add_argument("--min-rouge-l", type=_non_negative_float, default=0.0,
                       help="also refuse models below this ROUGE-L (default 0: only the baseline gate)")  # fmt: skip
    build.add_argument("--allow-below-baseline", action="store_true",
                       help="build even a model that does not beat the best extractive baseline on ROUGE-L "
                       "(refused by default)")  # fmt: skip
    build.add_argument("--base-image", default=None, help="the stage image the serving image starts FROM")
    _decoding_arguments(build)

    export = commands.add_parser("export", help="push the serving image (stage image + bundle layer) through the registry API, in a cluster")
    export.add_argument("--input", type=Path, required=True, help="the build output (bundle)")
    export.add_argument("--output", type=Path, required=True, help="folder to write image.json")
    export.add_argument("--image", required=True, help="REPO or REPO:TAG; without a tag, PACH_JOB_ID is the tag")

    predict = commands.add_parser("predict", help="write a title for every body of a CSV")
    predict.add_argument("--model", type=Path, required=True, help="a bundle or train output")
    predict.add_argument("--input", type=Path, required=True, help="CSV with a 'body' column")
    predict.add_argument("--output", type=Path, required=True, help="CSV to write (input columns + predicted_title)")
    predict.add_argument("--batch-size", type=_positive_int, default=512)
    _decoding_arguments(predict)

    serve = commands.add_parser("serve", help="serve a bundle over HTTP with MLServer")
    serve.add_argument("--model", type=Path, required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9000)
    return parser


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
STEP_INPUTS = {"split": ("input",), "vocabulary": ("input",), "pre_process": ("input",), "train": ("input",), "evaluate": ("model", "input"),
               "build": ("input",), "export": ("input",), "predict": ("model", "input")}  # fmt: skip


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


def run(args: argparse.Namespace) -> None:
    check_output(args)
    if args.command == "split" and args.layout == "shards":
        from issue_titles.shards import ShardSettings, run_split_shards

        shard_settings = ShardSettings(args.test_fraction, args.seed, args.sample_fraction, args.sample_size)
        if args.heldout_repos is not None:
            shard_settings = replace(shard_settings, heldout_repositories=args.heldout_repos)
        _report(run_split_shards(args.input, args.output, shard_settings))
    elif args.command == "vocabulary":
        from issue_titles.text import TextConfig
        from issue_titles.vocabulary import DRIFT_THRESHOLD, run_vocabulary

        config = TextConfig(args.body_vocab_size, args.body_length, args.title_vocab_size, args.title_length,
                            trigrams_per_token=args.trigrams_per_token, trigram_buckets=args.trigram_buckets)
        previous = args.previous
        if previous is None:
            import tempfile

            from issue_titles.previous import previous_output

            previous, _ = previous_output(Path(tempfile.mkdtemp(prefix="vocabulary-previous-")))
        threshold = DRIFT_THRESHOLD if args.drift_threshold is None else args.drift_threshold
        _report(run_vocabulary(args.input, args.output, config, previous, threshold))
    elif args.command == "pre_process" and args.vocabulary is not None:
        from issue_titles.encode import run_encode_shards

        _report(run_encode_shards(args.input, args.vocabulary, args.output))
    elif args.command == "split":
        from issue_titles.split import SplitSettings, run_split

        settings = SplitSettings(args.sample_size, args.test_fraction, args.seed)
        if args.heldout_repos is not None:
            settings = replace(settings, heldout_repositories=args.heldout_repos)
        report = run_split(args.input, args.output, settings)
        keys = ("rows_read", "rows_kept", "skipped", "train_rows", "test_rows", "heldout_rows")
        _report({key: report[key] for key in keys})
    elif args.command == "pre_process":
        from issue_titles.preprocess import run_preprocess
        from issue_titles.text import TextConfig

        config = TextConfig(args.body_vocab_size, args.body_length, args.title_vocab_size, args.title_length,
                            trigrams_per_token=args.trigrams_per_token, trigram_buckets=args.trigram_buckets)
        _report(run_preprocess(args.input, args.output, config))
    elif args.command == "train":
        from issue_titles.train import TrainSettings, run_train

        settings = TrainSettings(
            architecture=args.architecture, epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, embedding_dim=args.embedding_dim, hidden_dim=args.hidden_dim,
            dropout=args.dropout, patience=args.patience, encoder=args.encoder, schedule=args.schedule,
            label_smoothing=args.label_smoothing, average_steps=args.average_steps, precision=args.precision,
            word_dropout=args.word_dropout,
            validation_split=args.validation_split,
            max_minutes=args.max_minutes, seed=args.seed,
        )  # fmt: skip
        if args.vocabulary is not None:
            from issue_titles.incremental import UpdateSettings, run_train_incremental

            update = UpdateSettings(args.full, args.update_epochs, args.update_lr_scale, args.replay_factor,
                                    args.min_replay)
            info = run_train_incremental(args.input, args.vocabulary, args.output, settings, update, args.previous)
            _report(info["training"] | {"lineage": {k: v for k, v in info["lineage"].items() if k != "settings"}})
        else:
            _report(run_train(args.input, args.output, settings)["training"])
    elif args.command == "evaluate":
        from issue_titles.evaluate import run_evaluate

        metrics = run_evaluate(args.model, args.input, args.output, **_decoding(args))
        summary = {key: metrics[key] for key in ("model", "lead_baseline", "test_rows")}
        if "heldout" in metrics:
            keys = ("rows", "model", "best_baseline", "margin_rouge_l")
            summary["heldout"] = {key: metrics["heldout"][key] for key in keys}
        _report(summary)
    elif args.command == "build":
        from issue_titles.build import DEFAULT_BASE_IMAGE, run_build

        provenance = run_build(args.input, args.output, args.min_rouge_l, args.base_image or DEFAULT_BASE_IMAGE,
                               beat_baseline=not args.allow_below_baseline, **_decoding(args))
        _report({key: provenance[key] for key in ("job_id", "inputs", "metrics", "code")})
    elif args.command == "export":
        from issue_titles.export import run_export

        _report(run_export(args.input, args.output, args.image))
    elif args.command == "predict":
        from issue_titles.predict import run_predict

        _report(run_predict(args.model, args.input, args.output, args.batch_size, **_decoding(args)))
    elif args.command == "serve":
        from issue_titles.predictor import check_bundle

        check_bundle(args.model)  # a changed bundle exits 4 here, with one line, before any server starts
        try:
            from issue_titles.serving.server import serve
        except ImportError as error:
            raise StageError(f"serving is not installed ({error}); install issue-titles[serve]") from None
        serve(args.model, args.host, args.port)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of step logs
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args)
    except StageError as error:
        print(f"stages {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except StdoutClosed:
        _silence_stdout()
        print(
            f"stages {args.command}: stdout was closed, so the report was not printed; the output {args.output} is complete",
            file=sys.stderr,
        )
        return 141
    except KeyboardInterrupt:
        print(f"stages {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence: one readable line, details on demand
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

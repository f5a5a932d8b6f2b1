"""`python -m issue_titles.serving --model DIR [--host H] [--port P]`: the server without the `stages` CLI.

Handy for development and the serving tests; the serving image runs `stages serve`, which calls the same
`serve()`. Limits come from `ISSUE_TITLES_*` variables (see README.md).
"""

import argparse
import sys

from issue_titles.contract import SERVING_PORT
from issue_titles.errors import StageError

from .options import add_observability_options
from .server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m issue_titles.serving", description=__doc__)
    parser.add_argument("--model", required=True, help="serving bundle folder (what `stages build` writes)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=SERVING_PORT)
    parser.add_argument("--grpc-port", type=int, default=None, help="turn gRPC on at this port (default: off)")
    add_observability_options(parser, int)  # `serve()` checks the port
    parser.add_argument("--predictor-loader", default=None, help="'module:callable' replacing TitlePredictor.load")
    args = parser.parse_args(argv)
    try:
        if args.predictor_loader is None:  # a real bundle: a changed one exits 4 with one line, as `stages serve` does
            from issue_titles.model_loading import check_bundle  # TensorFlow-free: a refusal comes at once

            check_bundle(args.model)
        serve(
            args.model,
            args.host,
            args.port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            predictor_loader=args.predictor_loader,
            tracing_server=args.tracing_server,
            log_format=args.log_format,
            access_log=args.access_log,
        )
    except StageError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The bundle and serving contract, in one place: the names `stages train` writes and the predictor reads, what
`stages build` puts in a bundle, and what the serving image exposes.

TensorFlow-free (constants only), so export, the serving settings and the CLI import it without loading a model.
The Pulumi program and localpach cannot import this package: what they need of it is in `pipelines/contract.py`,
and tests/pipelines/test_contract.py keeps the two equal."""

MODEL_NAME = "issue-summarization"  # MLServer's model name, the SeldonDeployment's, the V2 routes'
RUNTIME = "issue_titles.serving.runtime.IssueTitleRuntime"  # model-settings.json "implementation"

# The stage image's non-root user (stages/Dockerfile `useradd --uid`): the TFJob replicas run as it, and the serving
# image, built on the stage image, too.
STAGE_UID = 10001
# The serving image: its user, its HTTP port and MLServer's Prometheus /metrics port (MLServer's default).
SERVING_UID = STAGE_UID
SERVING_PORT = 9000
METRICS_PORT = 8082
MODEL_DIR = "model"  # where the serving image holds the bundle (/model)
# How the serving image starts (the bundle's Dockerfile and the image `stages export` writes say the same).
ENTRYPOINT = ["stages"]
SERVE_CMD = ["serve", "--model", f"/{MODEL_DIR}", "--host", "0.0.0.0", "--port", str(SERVING_PORT),
             "--metrics-port", str(METRICS_PORT)]  # fmt: skip

# A `stages train` output: model.json's "format" (what the predictor reads) and the files it writes.
MODEL_FORMAT = 1
WEIGHTS_FILE = "model.weights.h5"
MODEL_INFO = "model.json"
BODY_VOCAB = "body_vocab.json"
TITLE_VOCAB = "title_vocab.json"
PREPROCESS = "preprocess.json"
MODEL_FILES = (WEIGHTS_FILE, MODEL_INFO, BODY_VOCAB, TITLE_VOCAB, PREPROCESS)

# A `stages build` bundle: its checksummed record, its model card and MLServer's settings files.
PROVENANCE = "provenance.json"
MODEL_CARD = "MODEL_CARD.md"
MODEL_SETTINGS_FILE = "model-settings.json"
SERVER_SETTINGS_FILE = "settings.json"

# A `stages export` output: the record of the image it pushed (or why it did not).
IMAGE_RECORD = "image.json"

# A step that updates asks for its pipeline's previous output commit through its spec's transform.env
# (issue_titles.previous): the request, the optional paths it reads of that commit (comma-separated), and the folder
# the local runner names instead of pachd.
PREVIOUS_OUTPUT_ENV = "ISSUE_TITLES_PREVIOUS_OUTPUT"
PREVIOUS_OUTPUT_REQUEST = "parent-commit"
PREVIOUS_FILES_ENV = "ISSUE_TITLES_PREVIOUS_FILES"
LOCAL_PREVIOUS_OUTPUT_ENV = "LOCALPACH_PREVIOUS_OUTPUT"

"""What the Pulumi program (infra/) and the local runner (localpach/) need of the model bundle and serving contract.

The home of these names is `issue_titles.contract` (stages/), which neither infra nor localpach may import; this is
its copy in the one package all three may share, and tests/pipelines/test_contract.py asserts the two are equal."""

STAGE_UID = 10001  # the stage image's non-root user (stages/Dockerfile), also the serving image's
MODEL_NAME = "issue-summarization"  # the SeldonDeployment's and container's name, MLServer's model name
SERVING_PORT = 9000  # MLServer HTTP in the serving image
METRICS_PORT = 8082  # MLServer's Prometheus /metrics in the serving image
PROVENANCE = "provenance.json"  # a build commit's checksummed record of the bundle
MODEL_CARD = "MODEL_CARD.md"  # a build commit's model card
IMAGE_RECORD = "image.json"  # an export commit's record of the image it pushed

# A step that updates asks for its pipeline's previous output commit through its spec's transform.env
# (issue_titles.previous): the request, the optional paths it reads of that commit (comma-separated), and the folder
# the local runner names instead of pachd.
PREVIOUS_OUTPUT_ENV = "ISSUE_TITLES_PREVIOUS_OUTPUT"
PREVIOUS_OUTPUT_REQUEST = "parent-commit"
PREVIOUS_FILES_ENV = "ISSUE_TITLES_PREVIOUS_FILES"
LOCAL_PREVIOUS_OUTPUT_ENV = "LOCALPACH_PREVIOUS_OUTPUT"

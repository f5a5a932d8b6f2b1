#!/usr/bin/env bash
# Regenerate the three lock files with uv (`make lock`), every pin with its sha256 hashes:
#   requirements-dev.lock          the dev/test environment (`make venv` installs it with --require-hashes), from
#                                  requirements-dev.txt, for every platform (markers pick tensorflow-cpu on x86_64);
#                                  the two local packages (stages, the root project) are left out: they are installed
#                                  editable with --no-deps after it.
#   stages/requirements.lock       the stage image (CPU TensorFlow): issue-titles[serve], linux x86_64, CPython 3.11
#   stages/requirements-gpu.lock   the same with tensorflow[and-cuda] in place of tensorflow-cpu (TENSORFLOW=gpu)
# The image locks are constrained to the dev lock, so the image gets the versions the tests ran with. uv keeps the
# versions already in a lock file unless asked: pass --upgrade (all) or --upgrade-package NAME; other arguments go to
# every `uv pip compile`.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-${VENV:-.venv}/bin/uv}"
compile=("$uv" pip compile --quiet --generate-hashes --python-version 3.11 --index-url https://pypi.org/simple
         --custom-compile-command "tools/lock.sh")

"${compile[@]}" requirements-dev.txt --universal --no-emit-package issue-titles \
  --no-emit-package issue-titles-platform --output-file requirements-dev.lock "$@"

image=("${compile[@]}" stages/pyproject.toml --extra serve --python-platform x86_64-manylinux_2_28
       --constraint requirements-dev.lock)
"${image[@]}" --output-file stages/requirements.lock "$@"
overrides="$(mktemp)"
trap 'rm -f "$overrides"' EXIT
# The gpu extra adds tensorflow[and-cuda]; the CPU build (a default dependency on x86_64) must not be installed too.
printf 'tensorflow-cpu ; python_version < "0"\n' > "$overrides"
"${image[@]}" --extra gpu --overrides "$overrides" --output-file stages/requirements-gpu.lock "$@"

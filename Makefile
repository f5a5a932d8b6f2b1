# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-slow lint lock bench clean

LOG    := $(VENV)/install.log

# One line per install phase (no commas in a label: it is a make argument); pip's and setuptools' output goes to $(LOG). On a failure, the log's last lines
# (warnings left out) are shown and make stops.
define phase
	@printf '%s\n' $(2)
	@$(1) >> $(LOG) 2>&1 || { \
	  printf 'install failed: %s\nlast lines of %s (warnings left out):\n' $(2) $(LOG) >&2; \
	  grep -v -i '^ *warning' $(LOG) | tail -n 30 >&2; exit 1; }
endef

$(STAMP): requirements-dev.lock stages/pyproject.toml pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@$(PYTHON) -m venv $(VENV)
	@: > $(LOG)
	@echo "install: into $(VENV) (details in $(LOG))"
	$(call phase,$(BIN)/python -m pip install --upgrade pip,'  1/4 pip')
	$(call phase,$(BIN)/python -m pip install --require-hashes -r requirements-dev.lock,'  2/4 every pinned dependency from requirements-dev.lock (TensorFlow + MLServer + Pulumi: the longest)')
	$(call phase,$(BIN)/python -m pip install --no-deps -e ./stages,'  3/4 the model package stages (editable)')
	$(call phase,$(BIN)/python -m pip install --no-deps -e .,'  4/4 localpach and the pipeline specs (editable)')
	@touch $(STAMP)
	@echo "install: done"

venv: $(STAMP)  ## the environment alone (the Pulumi program runs from it: Pulumi.yaml names .venv)

demo: $(STAMP)
	$(BIN)/localpach demo

# Both cores (pytest-xdist; a test file's tests stay on one worker, so its module fixtures are built once, and the
# files go out in the order tests/conftest.py gives them: the longest first) and the 25 slowest tests at the end.
# `make test PYTEST_ARGS=` runs serially.
PYTEST_ARGS ?= -n 2 --dist loadscope --no-loadscope-reorder --durations=25

# The real-client tests' own venv (seldon-core's client pins numpy<2 and protobuf<4), from its hash lock, before the
# tests run (tests/serving/client_envs.py; reused while the lock is unchanged; if it cannot be built those tests skip).
test: $(STAMP)
	@$(BIN)/python -m tests.serving.client_envs
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)  ## ruff check, ruff format --check and mypy, as CI runs them (tools/lint.sh)
	tools/lint.sh

lock: $(STAMP)  ## regenerate requirements-dev.lock and the image locks (uv, hashes; tools/lock.sh; --upgrade via ARGS)
	tools/lock.sh $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf .pfs bench/out runs

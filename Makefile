# Thin wrappers over `thread` and pytest. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
THREAD := $(BIN)/thread
PORT   ?= 3000
SCALE  ?= S
BENCH_ARGS ?=

.PHONY: setup demo test serve docs bench lock clean bench-rul bench-quarantine

$(BIN)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# Locked dependencies, the `thread` command, and the dbt manifest the Dagster definitions load.
setup: $(BIN)/.installed
	$(BIN)/python -c "from orchestration.dbt_project import prepare; prepare()"

demo: setup
	$(THREAD) simulate --if-missing
	$(THREAD) build

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=30

serve: setup
	$(THREAD) serve --port $(PORT)

docs: setup
	$(THREAD) docs

bench: setup
	$(BIN)/python -m bench --scale $(SCALE) $(BENCH_ARGS)

bench-quarantine: setup  # quarantining 1,000,000 rejected rows
	$(BIN)/python -m bench --quarantine

bench-rul: setup  # the remaining-useful-life model on NASA C-MAPSS FD001, through the pipeline
	$(BIN)/python -m bench --rul

# Re-resolve requirements.lock after changing pyproject.toml (needs uv: pip install uv).
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements.lock --python-version 3.11 --no-header

clean:  # everything runs wrote; data/reference/ is part of the repository
	find data -mindepth 1 -maxdepth 1 ! -name reference -exec rm -rf {} +
	rm -rf dbt_project/target

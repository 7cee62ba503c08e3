# The two commands of the README: `make demo` and `make test`.
# Both create .venv on first use (CPU torch pinned so no CUDA build is pulled).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.migr-rt-installed

.PHONY: setup demo test test-slow bundle clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)" -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/migr-rt demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Rebuild the bundled checkpoint (about 20 minutes on 2 CPU cores) and its benchmark.
bundle: $(STAMP)
	$(BIN)/migr-rt synth --n 2400 --out runs/synth-train --seed 1 --workers 2
	$(BIN)/migr-rt train --recipe base --data runs/synth-train --out migr_rt/assets/default --steps 1200 --seed 0
	$(BIN)/python benchmarks/bundled_model.py --data runs/synth-test --test-seed 2

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

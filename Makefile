# The two commands of the README: `make demo` and `make test`.
# Both create .venv on first use (CPU torch pinned so no CUDA build is pulled).
PYTHON ?= python3
VENV ?= .venv
# On machines without a local CPU wheel, e.g.:
#   make setup TORCH_SPEC="torch==2.13.0+cpu --extra-index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.migr-rt-installed

.PHONY: setup demo test bundle clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH_SPEC) -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/migr-rt demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Rebuild the bundled checkpoint (about 25 minutes on 2 CPU cores) and its benchmark.
bundle: $(STAMP)
	$(BIN)/migr-rt synth --n 2400 --out runs/synth-train --seed 1 --workers 2
	$(BIN)/migr-rt train --recipe base --data runs/synth-train --out migr_rt/assets/default \
		--cache-dir runs/cache --card docs/model_card_base.md --steps 1200 --seed 0
	$(BIN)/migr-rt synth --n 420 --out runs/synth-test --seed 2 --workers 2
	$(BIN)/python benchmarks/bundled_model.py --data runs/synth-test

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# The two commands of the README: `make demo` and `make test`.
# Both create .venv on first use (CPU torch pinned so no CUDA build is pulled).
PYTHON ?= python3
VENV ?= .venv
# On machines without a local CPU wheel, e.g.:
#   make setup TORCH_SPEC="torch==2.13.0+cpu --extra-index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.migr-rt-installed

.PHONY: setup demo test test-soak bundle experiment clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH_SPEC) -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/migr-rt demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The streaming soak (not part of `make test`): the runtime on the looping demo in real time for
# MIGR_SOAK_SECONDS (default 120) seconds; memory, queues and window rate must stay flat.
test-soak: $(STAMP)
	$(BIN)/python -m pytest -q -s -m soak tests/test_reliability_soak.py

# Rebuild the bundled checkpoint (the migr recipe, every stage; about 30 minutes on 2 CPU cores),
# time it, export it to the ONNX artifact installs without torch run, and measure it on the held-out corpus.
bundle: $(STAMP)
	$(BIN)/migr-rt synth --n 2400 --out runs/synth-train --seed 1 --workers 2
	$(BIN)/python benchmarks/training_time.py --name default_recipe --target 2700 -- \
		$(BIN)/migr-rt train --recipe migr --data runs/synth-train --out migr_rt/assets/default \
		--work-dir runs/bundle.work --cache-dir runs/bundle.cache --card docs/model_card_migr.md --steps 1200 --seed 0
	$(BIN)/migr-rt export --checkpoint migr_rt/assets/default --format onnx --precision fp32 \
		--out migr_rt/assets/default-onnx
	$(BIN)/migr-rt synth --n 420 --out runs/synth-test --seed 2 --workers 2
	$(BIN)/python benchmarks/bundled_model.py --data runs/synth-test
	$(BIN)/migr-rt eval --checkpoint migr_rt/assets/default --data runs/synth-test --out runs/bundle.eval \
		--cache-dir runs/bundle.cache

# The MIGR experiment: base, baseline, migr and the ablations on the held-out corpus (training seed 0),
# then baseline and migr with training seeds 1 and 2.
experiment: $(STAMP)
	$(BIN)/migr-rt synth --n 2400 --out runs/synth-train --seed 1 --workers 2
	$(BIN)/migr-rt synth --n 420 --out runs/synth-test --seed 2 --workers 2
	$(BIN)/migr-rt train --recipe base --data runs/synth-train --out runs/exp/base --cache-dir runs/cache \
		--card docs/model_card_base.md --steps 1200 --seed 0
	$(BIN)/python benchmarks/reasoning_experiment.py --train runs/synth-train --test runs/synth-test \
		--base runs/exp/base --work runs/exp
	for seed in 1 2; do $(BIN)/python benchmarks/reasoning_experiment.py --train runs/synth-train \
		--test runs/synth-test --base runs/exp/base --work runs/exp-seed$$seed --seed $$seed \
		--only baseline,migr,migr+mi_opening,baseline+mi_opening || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# lad_ref: two commands on a fresh machine.
#   make demo   set up, then run the main job (bandit sweep + toy LLM run, CPU)
#   make test   set up, then run every test (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= dev,llm,notebooks,trl,verl
RUN    ?= runs
# make figures: how many of notebook 04's training runs go side by side (each on one CPU thread)
JOBS   ?= 2

.PHONY: setup demo demo-bandit demo-llm test test-fast lint figures bench study clean

# torch: where no NVIDIA GPU answers, install the local CPU build first (pip would otherwise pull
# several GB of CUDA wheels for the project's range); on a GPU machine pip picks a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: torch comes from the default index"; \
	else \
		echo "no GPU: installing the CPU build torch==2.13.0"; $(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed

demo: setup demo-bandit demo-llm

demo-bandit: setup
	$(PY) -m lad_ref.bandit --config bandit/paper_exact.yaml --all --plot $(RUN)/bandit_exact.png

demo-llm: setup
	$(PY) -m lad_ref.llm.train --config llm/configs/toy.yaml --objective lad --divergence js \
		--output-dir $(RUN)/toy-lad-js --overwrite

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not notebooks" -p no:cacheprovider

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) -m benchmarks

figures: setup
	$(PY) notebooks/run_notebooks.py --full --jobs $(JOBS)

# make study: the paired toy study (llm/configs/study.yaml); resumable, so it can be stopped and rerun.
# GROUP=headline runs one group (protocol, protocol-epochs, headline, divergence, eta, baselines).
GROUP ?=
study: setup
	$(PY) -m lad_ref.llm.study --config llm/configs/study.yaml --jobs $(JOBS) $(if $(GROUP),--group $(GROUP)) \
		--json paper_figures/toy_study.json --figures paper_figures

clean:
	rm -rf $(RUN) .pytest_cache

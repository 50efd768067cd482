# lad_ref: two commands on a fresh machine.
#   make demo   set up, then run the main job (bandit sweep + GRPO and LAD on the toy LM, CPU)
#   make test   set up, then run every test (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= dev,llm,notebooks,tracking,trl,verl
RUN    ?= runs
# make figures: how many of notebook 04's training runs go side by side (each on one CPU thread)
JOBS   ?= 2

.PHONY: setup demo demo-bandit demo-llm bandit-regime bandit-frontier test test-fast lint figures notebooks bench bench-bandit-sweep gpu-check gpu-deps study clean

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

# the bandit in the LLM regime: regenerates paper_figures/bandit_regime.{json,png,pdf} and bandit_regime_tied.*
# (8 objectives x 5 K, then 5 control sweeps: about 8 min on 2 idle cores, 15-20 min on busy ones)
bandit-regime: setup
	$(PY) -m lad_ref.bandit.regime --config bandit/regime.yaml --out paper_figures/bandit_regime.json --plot paper_figures/bandit_regime.png paper_figures/bandit_regime.pdf

# GRPO and LAD-js on seed 0 with the toy study's protocol, side by side, then a table beside the committed
# multi-seed result (lad_ref/study/demo.py; a second `make demo` reuses the finished runs)
# the PPO-penalty frontier beside LAD's eta sweep (issue 24): paper_figures/bandit_frontier.{json,png,pdf}. The beta grid
# is chosen first on seeds 100-103 (bandit/frontier_select.yaml); K = 64 is split in two commands to stay under 10 min
# each (about 20 min in all on busy cores)
FR := $(RUN)/frontier
bandit-frontier: setup
	mkdir -p $(FR)
	$(PY) -m lad_ref.bandit.regime --config bandit/frontier_select.yaml --out $(FR)/select.json
	$(PY) -m lad_ref.bandit.regime --config bandit/frontier.yaml --steps-per-rollout 1,4,16 --out $(FR)/k1_16.json
	$(PY) -m lad_ref.bandit.regime --config bandit/frontier.yaml --steps-per-rollout 64 \
		--objectives 'grpo;lad(js,eta=0.25);lad(js,eta=0.5);lad(js,eta=1);lad(js,eta=2);lad(js,eta=4)' --out $(FR)/k64_lad.json
	$(PY) -m lad_ref.bandit.regime --config bandit/frontier.yaml --steps-per-rollout 64 \
		--objectives 'grpo;ppo_penalty(beta=0.1);ppo_penalty(beta=0.3);ppo_penalty(beta=1);ppo_penalty(beta=3);ppo_penalty(beta=10);ppo_penalty(beta=1,tied_only=true)' \
		--out $(FR)/k64_pen.json
	$(PY) -m lad_ref.bandit.regime --config bandit/frontier.yaml --merge $(FR)/k1_16.json $(FR)/k64_lad.json $(FR)/k64_pen.json \
		--selection $(FR)/select.json --out paper_figures/bandit_frontier.json --plot paper_figures/bandit_frontier.png paper_figures/bandit_frontier.pdf

demo-llm: setup
	$(PY) -m lad_ref.study.demo --output-dir $(RUN)/demo --jobs $(JOBS)

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not notebooks" -p no:cacheprovider

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) -m benchmarks

# the bandit's --all sweep at c70ec88 (one process) and now (worker processes), alternating, JSON outputs
# checked identical: benchmarks/results/bandit-sweep-<machine>.{json,md} (run it on an idle machine)
bench-bandit-sweep: setup
	$(PY) -m benchmarks.bench_bandit_sweep --repeats 3

# make gpu-check: the GPU path in one command (docs/gpu.md); tiny shapes where there is no CUDA.
# No `setup` dependency: on a GPU image nothing can be installed, so it runs with .venv's python
# where there is one and the image's python3 otherwise (GPU_PY=..., GPU_OUT=<folder> to choose).
# The trainer's pure-Python config library (omegaconf + its antlr4 runtime) is not in a bare GPU
# image: `make gpu-deps` copies it from .venv into .gpu_pythonpath/ (git-ignored, ~2 MB), which the
# device call carries; gpu_check appends that folder to sys.path when it exists.
GPU_PY  ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	$(GPU_PY) -m benchmarks.gpu_check $(if $(GPU_OUT),--out $(GPU_OUT))

gpu-deps: setup
	rm -rf .gpu_pythonpath && mkdir -p .gpu_pythonpath
	$(PY) -c "import omegaconf, antlr4, os, shutil; [shutil.copytree(os.path.dirname(m.__file__), '.gpu_pythonpath/' + m.__name__) for m in (omegaconf, antlr4)]"

# regenerate paper_figures/ and the stored outputs of notebooks 01-02 (full mode, ~70 min on 2 CPU cores: 04 runs the whole toy study)
figures: setup
	$(PY) notebooks/run_notebooks.py --full --jobs $(JOBS) --store-outputs

# JupyterLab on notebooks/, with the kernel `lad_ref` = this .venv's python (extra jupyter options: LAB_ARGS=...)
notebooks: setup
	$(PY) notebooks/run_notebooks.py --lab $(LAB_ARGS)

# make study: the paired toy study (llm/configs/study.yaml); resumable, so it can be stopped and rerun.
# GROUP=headline runs one group (protocol, protocol-epochs, headline, divergence, eta, baselines).
GROUP ?=
study: setup
	$(PY) -m lad_ref.study --config llm/configs/study.yaml --jobs $(JOBS) $(if $(GROUP),--group $(GROUP)) \
		--json paper_figures/toy_study.json --figures paper_figures

clean:
	rm -rf $(RUN) .pytest_cache

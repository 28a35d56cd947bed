# ocrkit: `make demo` and `make test` each do all the set-up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
OCRKIT := $(VENV)/bin/ocrkit
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0
DEMO_DATA := data/demo
DEMO_OUT := out/demo

.PHONY: setup test test-all demo clean

# torch first and pinned: this machine has its CPU wheel; an unpinned torch pulls CUDA builds.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""

demo: setup
	$(OCRKIT) data synth $(DEMO_DATA) --train 20 --val 20 --size 640 640 --seed 0
	$(OCRKIT) maps show $(DEMO_DATA)/val/images/synth_000001.jpg --gt $(DEMO_DATA)/val/gts/gt_synth_000001.txt --out $(DEMO_OUT)/maps
	$(OCRKIT) maps check --data $(DEMO_DATA)/val --set data.eval_size=[640,640]
	@echo "Map overlays: $(DEMO_OUT)/maps"

clean:
	rm -rf $(VENV) $(DEMO_DATA) $(DEMO_OUT) .pytest_cache

# Lip-sync service. `make demo` and `make test` are all a new machine needs.
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup proto up down demo test bench bench-gpu bench-gpu-e2e weights clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -r requirements.txt
	$(PYTHON) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)           ## create .venv with everything (offline-safe: no model downloads)

proto: $(STAMP)           ## regenerate gen/ from protos/
	PYTHON=$(PYTHON) scripts/gen_protos.sh gen

up: $(STAMP)              ## run gateway :50051, preprocess :50052, generator :50053 on 127.0.0.1
	$(PYTHON) -m tools.stack up

down:                     ## stop what `make up` started
	$(PYTHON) -m tools.stack down

demo: $(STAMP)            ## lip-sync the bundled sample into out/demo.mp4
	$(PYTHON) -m tools.demo

test: $(STAMP)            ## all tests (real gRPC servers on 127.0.0.1)
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)           ## end-to-end frames/s through the gateway at 720p -> bench/RESULTS.md
	$(PYTHON) -m tools.bench

bench-gpu:                ## on a GPU machine: MuseTalk networks at full size (random weights) -> $$OUT or bench/
	$(PYTHON) -m tools.bench_gpu

bench-gpu-e2e:            ## on a GPU machine: the whole service with musetalk (random weights), 720p
	$(PYTHON) -m tools.bench_e2e_gpu

weights: $(STAMP)         ## real deployments: fetch the official MuseTalk files into MODELS_DIR (never run by tests)
	$(PYTHON) -m tools.weights --models-dir $${MODELS_DIR:-models}

clean:
	rm -rf var out

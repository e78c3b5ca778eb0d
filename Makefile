# Lip-sync service. `make demo` and `make test` are all a new machine needs.
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WEB_VENV ?= .venv-web
WEB_STAMP := $(WEB_VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup setup-web proto up down demo test loadtest bench bench-gpu bench-gpu-e2e weights clean images deploy undeploy port-forward

KUBECTL ?= kubectl
ENV ?= gpu-t4
NAMESPACE ?= lipsync
REGISTRY ?= registry.example.com/lipsync
TAG ?= latest
SERVICES := gateway preprocess generator render evaluator
IMAGES := $(SERVICES) web

$(STAMP): requirements.txt $(wildcard requirements/*.txt) pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -r requirements.txt
	$(PYTHON) -m pip install -q --no-deps -e .
	@# espeak-ng (phonemes for non-English speech) is a system package: installed when we may, else skipped
	@command -v espeak-ng >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (timeout 300 apt-get install -y -qq espeak-ng >/dev/null 2>&1 || \
	   (timeout 300 apt-get update -qq >/dev/null 2>&1 && timeout 300 apt-get install -y -qq espeak-ng >/dev/null 2>&1)) ; } || \
	  echo "note: espeak-ng not installed; non-English speech uses letter-guessed phonemes (apt-get install espeak-ng)"
	touch $(STAMP)

setup: $(STAMP)           ## create .venv with everything: requirements/dev.txt (offline-safe: no model downloads)

$(WEB_STAMP): requirements/web.txt
	test -x $(WEB_VENV)/bin/python || $(PY) -m venv $(WEB_VENV)
	$(WEB_VENV)/bin/python -m pip install -q --upgrade pip
	$(WEB_VENV)/bin/python -m pip install -q -r requirements/web.txt
	@# the page's browser test drives Debian's chromium: installed when we may, else that one test skips
	@command -v chromedriver >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (timeout 600 apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	   (timeout 300 apt-get update -qq >/dev/null 2>&1 && timeout 600 apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1)) ; } || \
	  echo "note: chromium not installed; the web page's browser test will skip (apt-get install chromium chromium-driver)"
	touch $(WEB_STAMP)

setup-web: $(WEB_STAMP)   ## the web page's own environment (.venv-web: Gradio needs numpy 2) and Chromium for its test

proto: $(STAMP)           ## regenerate gen/ from protos/
	PYTHON=$(PYTHON) scripts/gen_protos.sh gen

up: $(STAMP) $(WEB_STAMP) ## run gateway :50051, preprocess :50052, generator :50053, evaluator :50054, render :50055, web page :7860 on 127.0.0.1
	$(PYTHON) -m tools.stack up

down:                     ## stop what `make up` started
	$(PYTHON) -m tools.stack down

demo: $(STAMP)            ## lip-sync the bundled sample into out/demo.mp4
	$(PYTHON) -m tools.demo

test: $(STAMP) $(WEB_STAMP) ## all tests (real gRPC servers on 127.0.0.1, the web page in headless Chromium)
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

loadtest: $(STAMP)        ## concurrent streams at 1x/2x/4x capacity on 127.0.0.1 -> bench/LOADTEST.md
	$(PYTHON) -m tools.loadtest

images:                   ## where Docker runs: one image per room, each with only requirements/<room>.txt
	for s in $(IMAGES); do \
	  docker build -f docker/Dockerfile.$$s -t $(REGISTRY)/lipsync-$$s:$(TAG) . && \
	  docker push $(REGISTRY)/lipsync-$$s:$(TAG) || exit 1; \
	done

deploy:                   ## apply k8s/overlays/$(ENV) with images from $(REGISTRY):$(TAG), wait for the rollouts
	$(KUBECTL) kustomize k8s/overlays/$(ENV) | sed -e 's#image: REGISTRY/#image: $(REGISTRY)/#' \
	  -e 's#\(image: .*lipsync-[a-z]*\):latest#\1:$(TAG)#' | $(KUBECTL) apply -f -
	for s in $(IMAGES); do \
	  $(KUBECTL) -n $(NAMESPACE) rollout status deployment/$$s --timeout=20m || exit 1; \
	done

undeploy:                 ## delete what `make deploy ENV=...` applied (the volumes too)
	$(KUBECTL) kustomize k8s/overlays/$(ENV) | $(KUBECTL) delete --ignore-not-found -f -

port-forward:             ## the gateway on 127.0.0.1:50051 (then `lipsync run ...` works against it)
	$(KUBECTL) -n $(NAMESPACE) port-forward service/gateway 50051:50051

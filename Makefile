# Set-up, demo and tests. `make demo` and `make test` install whatever is missing first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := mesa-vulkan-drivers libvulkan1 glslc
DEMO_MODEL := examples/tinynet.onnx
DEMO_PLAN := out/demo-plan
BENCH_ARGS ?= --models tinynet,squeezenet,resnet50 --runs 20

.PHONY: demo test lint bench system-deps setup clean

# This chip: compile (profiling it first if needed), check against onnxruntime, run. Then for a Ryzen AI 9 HX 370
# (cross-compiled here, every figure predicted): the plan the solver chooses and why each op, the NPU's included,
# is where it is; then a plan with all three processors forced, its predicted timeline, and a run of it here with
# the NPU simulated.
demo: setup
	$(BIN)/ragc compile $(DEMO_MODEL) -o $(DEMO_PLAN)
	$(BIN)/ragc validate $(DEMO_PLAN) --model $(DEMO_MODEL)
	$(BIN)/ragc run $(DEMO_PLAN) --repeat 50
	$(BIN)/ragc compile $(DEMO_MODEL) -o $(DEMO_PLAN)-hx370 --target ryzen-ai-9-hx-370
	$(BIN)/ragc explain $(DEMO_PLAN)-hx370
	$(BIN)/ragc compile $(DEMO_MODEL) -o $(DEMO_PLAN)-hx370-forced --target ryzen-ai-9-hx-370 --place Gemm=npu --place Conv=gpu
	$(BIN)/ragc simulate $(DEMO_PLAN)-hx370-forced
	$(BIN)/ragc run $(DEMO_PLAN)-hx370-forced --npu sim --repeat 5

test: setup
	$(BIN)/python -m pytest -p no:cacheprovider tests

lint: setup
	$(BIN)/ruff check ragc codegen runtime_min tests bench examples
	$(BIN)/ruff format --check ragc codegen runtime_min tests bench examples

bench: setup
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python bench/run.py $(BENCH_ARGS)

setup: system-deps $(STAMP)

# Vulkan (Mesa's lavapipe on machines without a GPU) and the GLSL compiler; only as root, with apt.
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "note: missing system packages: $$missing (install them as root for GPU support; CPU works without)"; \
	  fi; \
	fi

$(STAMP): pyproject.toml runtime_min/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ./runtime_min -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) out build *.egg-info

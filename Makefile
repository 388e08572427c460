# Two commands do all the set-up: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo_run

.PHONY: demo test docs bundles clean

# On a machine without an NVIDIA driver, take the CPU wheel of torch first (pip would otherwise pull a
# CUDA build of several GB); with a driver, pip's default torch build is the right one.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/python -m pip install -q torch==2.13.0; fi
	$(BIN)/python -m pip install -q -e '.[dev,onnx,bioimageio,napari]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/unetkit data demo $(DEMO)/data --seed 0
	$(BIN)/unetkit train bundles/phc_u373 --data $(DEMO)/data --output $(DEMO)/model --steps 200 --overwrite \
	    --set 'network_def::features=[16,32,64,128,256]'
	$(BIN)/unetkit infer $(DEMO)/model $(DEMO)/data/02/t000.tif -o $(DEMO)/masks --preview --overwrite
	@echo "demo done: mask and overlay in $(DEMO)/masks/, model in $(DEMO)/model/"

# two workers: the suite is CPU-bound and CI has 2 cores
test: $(STAMP)
	$(BIN)/python -m pytest -n 2

docs: $(STAMP)
	$(BIN)/typer unetkit.cli.app utils docs --name unetkit --output docs/cli.md
	$(BIN)/python -c "from unetkit.bundle.allowlist import write_markdown; write_markdown('docs/bundles.md')"

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache

# The recipes' configs are made from recipes/ (a shared base + one overlay per recipe); a test checks they are current.
bundles: $(STAMP)
	$(BIN)/python -m unetkit.bundle.assemble

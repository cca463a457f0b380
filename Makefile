# meshgrpc: install, test, regenerate the API, benchmark.
PY      := python3
VENV    := .venv
VPY     := $(VENV)/bin/python
PROTOS  := $(wildcard protos/meshapi/v1/*.proto)

.PHONY: install test protos demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[dev]'
	touch $@

test: install
	$(VPY) -m pytest -q -n 2 tests

# Regenerate generated/ from protos/ (stubs with .pyi typing). OUT overrides the target folder.
OUT ?= generated
protos: install
	$(VPY) -m meshgrpc.tools.genprotos $(OUT)

demo: install
	$(VENV)/bin/meshgrpc control-plane --config examples/mesh.yaml

bench: install
	$(VPY) -m bench.run

clean:
	rm -rf $(VENV) .meshgrpc

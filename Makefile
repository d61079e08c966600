# Two commands for a fresh machine with Python 3.11+, pip and make:
#   make demo   create .venv, install sealfl, run the main job
#   make test   install the test tools, lint, type-check, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test lint protos bench fuzz clean docker-smoke

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test,hfl]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/sealfl demo homo-lr

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

# Every benchmark, each against its named peer (several minutes on 2 cores).
bench: $(VENV)/.installed-test
	for b in paillier ratls homo-lr infer kbs release hfl vfl psi sim; do $(BIN)/sealfl bench $$b || exit 1; done

# Fuzz every parser and handler that takes another party's bytes, 10^5 inputs per target
# (about an hour on 2 cores): a table of inputs, distinct errors, crashes and the slowest
# input; crashing inputs are written to fuzz-results/ and the target fails.
fuzz: $(VENV)/.installed-test
	$(BIN)/python tests/fuzz/run_fuzz.py --inputs 100000 --out fuzz-results

# Opt-in, root, a few minutes, not part of `make test`: install Docker (docker.io) and debootstrap
# if missing, build the image from a debootstrap base (no registry), run the PS, the key broker and
# two workers in separate containers from their bundles; prints the image size and the times.
docker-smoke:
	sh deploy/docker/smoke.sh

# Regenerate the protobuf and gRPC stubs after editing a .proto file (they are committed).
protos: $(VENV)/.installed-test
	$(BIN)/python -m grpc_tools.protoc -Isrc --python_out=src --grpc_python_out=src --pyi_out=src \
		$$(find src -name '*.proto')

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis fuzz-results

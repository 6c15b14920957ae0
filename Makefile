# Two entry points for a fresh Debian machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
SPEC_DIR ?= /etc/cdi

.PHONY: run test venv system-deps lint unit bench proto clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV) || { sh scripts/install-system-deps.sh python3-venv && python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

## run: install into .venv, write the CDI spec for this node's /dev/fuse, list the spec dirs, show the doctor report
run: venv
	$(BIN)/cdi-fuse generate --spec-dir $(SPEC_DIR)
	$(BIN)/cdi-fuse list --spec-dir $(SPEC_DIR)
	$(BIN)/cdi-fuse doctor --spec-dir $(SPEC_DIR)

## system-deps: the Debian packages the real-runtime tests use (installed only when root and missing);
## with CDI_FUSE_K8S_BIN set, also what the cluster tier needs (tests/e2e/cluster)
CLUSTER_PACKAGES := debootstrap containernetworking-plugins iproute2 openssl openssh-client
system-deps:
	sh scripts/install-system-deps.sh
	if [ -n "$$CDI_FUSE_K8S_BIN" ]; then sh scripts/install-system-deps.sh $(CLUSTER_PACKAGES); fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## test: system packages, lint, type checks, import layers and the whole test suite
test: venv system-deps lint
	$(BIN)/pytest -p no:cacheprovider

bench: venv
	$(PY) bench/run.py $(BENCH_ARGS)

## proto: regenerate cdi_fuse/_proto from plugin/*.proto
proto: venv
	sh scripts/gen-proto.sh

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

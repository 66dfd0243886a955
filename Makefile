# The two commands a fresh clone needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint fuzz bench services proto clean interop interop-env interop-libs tools browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/modelgate demo

services:
	./scripts/services.sh

test: $(STAMP) services tools browser
	$(BIN)/python -m pytest -q

# Debian's Chromium, which the dashboard's Playwright test drives (never `playwright install`).
browser:
	@test -x /usr/bin/chromium || apt-get install -y -q chromium \
		|| (apt-get update -q && apt-get install -y -q chromium)

# The validators of the deployment files (tests/deploy, deploy/README.md): promtool and
# haproxy unpacked under .tools/ from Debian's packages when missing (nothing installed or
# started); docker compose and kubernetes-validate come with the dev dependencies.
tools:
	./scripts/validators.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_cycles.py

# The suite runs schemathesis with 25 examples per operation; this runs it with 300.
fuzz: $(STAMP) services
	MODELGATE_FUZZ_EXAMPLES=300 $(BIN)/python -m pytest -q -m fuzz tests/registry/test_schema_fuzz.py

# Each prints its ratios last; see docs/BENCHMARKS.md for the recorded runs.
bench: $(STAMP) interop-env
	$(BIN)/python -m bench.bench_resolve
	$(BIN)/python -m bench.bench_balancer
	$(BIN)/python -m bench.bench_worker
	$(BIN)/python -m bench.gateway_overhead
	$(BIN)/python -m bench.access_log
	$(BIN)/python -m bench.gateway_balancing
	$(BIN)/python -m bench.gateway_overload
	$(BIN)/python -m bench.publish_under_load
	$(BIN)/python -m bench.perf_analyzer

# Third-party tools against a live stack (docs/INTEROP.md): each tool in its own virtualenv
# under .interop/, pinned in bench/interop/requirements/; perf_analyzer's loader needs
# Debian's libb64-0d, installed here when missing.
INTEROP := .interop
INTEROP_TOOLS := perf_analyzer kserve mlserver

$(INTEROP)/%/.installed: bench/interop/requirements/%.txt
	test -x $(INTEROP)/$*/bin/python || $(PYTHON) -m venv $(INTEROP)/$*
	$(INTEROP)/$*/bin/python -m pip install -q -r $<
	touch $@

interop-libs:
	@ldconfig -p | grep -q 'libb64\.so\.0d' || apt-get install -y -q libb64-0d \
		|| (apt-get update -q && apt-get install -y -q libb64-0d)

interop-env: interop-libs $(foreach t,$(INTEROP_TOOLS),$(INTEROP)/$(t)/.installed)

interop: $(STAMP) interop-env
	$(BIN)/python -m bench.interop

# The gRPC messages, generated from modelgate/core/proto/inference.proto (committed).
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. modelgate/core/proto/inference.proto

clean:
	rm -rf $(VENV) $(INTEROP) .tools var .pytest_cache .mypy_cache .ruff_cache

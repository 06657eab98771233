# Two commands for a newcomer: `make demo` and `make test`. Everything else is a building block.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install lock docs jars prometheus helm go-examples chart deploy demo test unit integration chaos chaos-cluster lint typecheck format clean bench fuzz

# the product (.) and, beside it, the development distribution (dev/: the simulator, the developer
# tools and the test tools), both editable; only the product is ever built into a wheel or an image.
# The product's dependencies at the versions requirements.lock pins (the image's), so the tests run
# what ships; the constraints are the lock without its hashes (an editable install has none).
$(STAMP): pyproject.toml dev/pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	sed -n 's/^\([a-z0-9][^ ]*==[^ ]*\).*/\1/p' requirements.lock > $(VENV)/constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -c $(VENV)/constraints.txt -e . -e ./dev
	@touch $(STAMP)

install: $(STAMP)

# Apache Kafka jars from Maven Central into ~/.cache/moderation-consumer (once).
jars: $(STAMP)
	$(BIN)/python -c 'from moderation_devtools.broker import ensure_jars; print("kafka jars:", ensure_jars())'

# promtool and prometheus 2.42+ for the monitoring tests: the ones on PATH when new enough, else
# Debian's package (as root or with passwordless sudo; its service is left stopped), else a message
# saying how to get them.
prometheus:
	@bash .ci/install-prometheus

# helm: one on PATH when it is 3.x at moderation_devtools.chart.HELM_MINIMUM or later; else v3.21.4
# (v3.22.0 is served but not approved here), built with `go install` into $MODERATION_CACHE_DIR/bin or
# ~/.cache/moderation-consumer/bin when missing (once; needs Go).
helm: $(STAMP)
	$(BIN)/python -m moderation_devtools.chart --helm

# requirements.lock (the product's runtime dependencies: Linux x86_64, CPython 3.11 as in the image,
# wheels only, every file's sha256) and docker/build-tools.lock (the image build's setuptools and
# cyclonedx-bom), from pyproject.toml and docker/build-tools.in. Pins that still fit are kept;
# `make lock LOCK_ARGS=--upgrade` takes the newest versions the ranges allow. Needs the package index.
LOCK_ARGS ?=
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --only-binary :all: \
	--generate-hashes --custom-compile-command "make lock" --quiet $(LOCK_ARGS)
lock: install
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
	$(BIN)/uv pip compile docker/build-tools.in $(LOCK_FLAGS) -o docker/build-tools.lock

# the Go examples' modules (examples/go/go.sum pins them) from the Go module proxy into
# $MODERATION_CACHE_DIR/go/mod or ~/.cache/moderation-consumer/go/mod (once), and gofmt's check;
# tests/integration/test_go_examples.py builds and runs them with the same cache
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
go-examples:
	@if [ ! -x "$(GO)" ]; then echo "go-examples: Go is not installed: test_go_examples.py skips (and fails on CI)"; exit 0; fi; \
	cd examples/go && GOMODCACHE="$${MODERATION_CACHE_DIR:-$$HOME/.cache/moderation-consumer}/go/mod" \
	  GOFLAGS=-mod=readonly GOTOOLCHAIN=local "$(GO)" mod download || exit 1; \
	unformatted="$$("$$("$(GO)" env GOROOT)/bin/gofmt" -l .)"; test -z "$$unformatted" || { echo "gofmt -l: $$unformatted"; exit 1; }

# the chart's copies of deploy/ and its generated values schema, brought in step
chart: $(STAMP)
	$(BIN)/python -m moderation_devtools.chart
	$(BIN)/python -m moderation_devtools.chart_readme

# The documentation site (mkdocs.yml, docs/) into .local/site; --strict: a broken link, a missing
# anchor or a page left out of the nav fails it (first in `make test`: it takes a second)
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir .local/site

demo: install jars
	$(BIN)/python -m moderation_devtools.demo

lint: install
	$(BIN)/ruff check consumer dev tests bench examples
	$(BIN)/mypy
	$(BIN)/mypy examples
	$(BIN)/hadolint Dockerfile
	$(BIN)/bandit -q -r consumer -c pyproject.toml

test: install docs jars prometheus helm go-examples lint
	$(BIN)/pytest -p no:cacheprovider

unit: install prometheus
	$(BIN)/pytest tests/unit

integration: install jars prometheus helm go-examples
	$(BIN)/pytest tests/integration

deploy: install helm
	$(BIN)/pytest tests/deploy

chaos: install jars
	$(BIN)/pytest -s tests/chaos

# The three-node cluster's scenarios (tests/chaos/cluster), each in both delivery modes, with the
# accounting of every one printed at the end (and appended to .local/chaos-cluster/results.jsonl).
# As root each node and member is a network namespace of its own; CHAOS_CLUSTER_RUNS=5 repeats it.
CHAOS_CLUSTER_RUNS ?= 1
chaos-cluster: install jars
	@for run in $$(seq $(CHAOS_CLUSTER_RUNS)); do \
	  echo "chaos-cluster: run $$run of $(CHAOS_CLUSTER_RUNS)"; \
	  $(BIN)/pytest -p no:cacheprovider -m cluster tests/chaos/cluster || exit 1; \
	done

# Coverage-guided fuzzing (atheris) of every decoder of outside bytes for FUZZ_SECONDS each (a short
# run of each is part of `make test`); learns into .local/fuzz/corpus, crashes go to .local/fuzz/crashes
FUZZ_SECONDS ?= 60
fuzz: install
	$(BIN)/python -m tests.fuzz --all --seconds $(FUZZ_SECONDS)

format: install
	$(BIN)/ruff check --fix consumer dev tests bench examples
	$(BIN)/ruff format consumer dev tests bench examples

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (not part of `make test`): BENCH_UPLOADS=N make bench
bench: install jars
	$(BIN)/python -m bench.run

# DevMetrics: every target installs what it needs first, so each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEVMETRICS := $(BIN)/devmetrics
# The tests create (and drop) throwaway databases on this server.
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: install run up down test test-postgres test-sqlite lint format migrate migrate-status \
        migration verify-schema db-check reset seed clean browser studio bench bench-quick \
        bench-tools

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "DevMetrics needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

# Migrate (and seed an empty database), then the four services and the workers under one
# process manager; Ctrl-C stops them all. DATABASE_URL unset = embedded SQLite file.
run: install
	$(DEVMETRICS) db migrate
	$(DEVMETRICS) db seed --if-empty
	@h=$${HOST:-127.0.0.1}; \
	echo "DevMetrics is starting (Ctrl-C stops everything):"; \
	echo "  accounts       http://$$h:$${ACCOUNTS_PORT:-8001}/docs"; \
	echo "  activity       http://$$h:$${ACTIVITY_PORT:-8002}/docs"; \
	echo "  metrics        http://$$h:$${METRICS_PORT:-8003}/docs"; \
	echo "  notifications  http://$$h:$${NOTIFICATIONS_PORT:-8004}/docs"
	PATH="$(CURDIR)/$(BIN):$$PATH" exec $(BIN)/honcho start -f Procfile

# Every container must share one encryption key and one internal token: made once, in .env.
.env: | install
	@echo "DEVMETRICS_ENCRYPTION_KEYS=$$($(DEVMETRICS) keys generate)" > .env
	@echo "INTERNAL_API_TOKEN=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(32))')" >> .env
	@echo "wrote .env (keep it: the key decrypts the stored secrets)"

up: .env
	docker compose up --build -d

down:
	docker compose down

test: install
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-postgres
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory bench-quick

test-postgres: install browser
	TEST_DATABASE_URL='$(TEST_DATABASE_URL)' $(BIN)/pytest $(PYTEST_ARGS)

test-sqlite: install browser
	TEST_DATABASE_URL='sqlite://' $(BIN)/pytest $(PYTEST_ARGS)

# The dashboard's tests (tests/browser) drive Debian's chromium: installed here when missing
# and possible (root with apt-get). Otherwise they skip saying why, except under CI=true,
# where a missing browser fails.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	      || [ -z "$$CI" ] || exit 1; \
	  else \
	    echo "chromium is missing and cannot be installed here (needs root and apt-get):" \
	      "the browser tests will skip"; \
	  fi; }

# Benchmarks on PostgreSQL (BENCH_DATABASE_URL, default the test server): `bench` at the
# issue's sizes writes bench/results/ and fails when a bar is missed; `bench-quick` runs every
# script at small sizes (a smoke check, part of `make test`) into bench/results-quick/.
BENCH_DATABASE_URL ?= $(TEST_DATABASE_URL)

bench: install bench-tools
	BENCH_DATABASE_URL='$(BENCH_DATABASE_URL)' $(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: install bench-tools
	BENCH_DATABASE_URL='$(BENCH_DATABASE_URL)' BENCH_RESULTS_DIR=bench/results-quick \
	  $(BIN)/python -m bench.run --quick $(BENCH_ARGS)

# wrk (Debian) generates the webhook load: installed here when missing and possible.
bench-tools:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's wrk for the benchmarks"; \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null; } \
	      || exit 1; \
	  else \
	    echo "wrk is missing and cannot be installed here (needs root and apt-get)"; exit 1; \
	  fi; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: install
	$(DEVMETRICS) db migrate

migrate-status: install
	$(DEVMETRICS) db status

migration: install
	@test -n "$(name)" || (echo "usage: make migration name=NAME" && exit 2)
	$(DEVMETRICS) db makemigration $(name)

verify-schema: install
	$(DEVMETRICS) db verify

db-check: install
	$(DEVMETRICS) db check

reset: install
	$(DEVMETRICS) db reset

seed: install
	$(DEVMETRICS) db seed

# The visual database browser on http://127.0.0.1:5555 (STUDIO_PASSWORD=... make studio).
studio: install
	$(DEVMETRICS) db migrate
	$(DEVMETRICS) db seed --if-empty
	$(DEVMETRICS) studio

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache devmetrics.db devmetrics.db-wal devmetrics.db-shm

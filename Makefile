# digest: two commands matter. `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Parallel pytest workers: most tests wait on real servers and subprocesses, so four keep two
# cores busy.
TEST_WORKERS ?= 4

.PHONY: demo test lint typecheck unit timezones mutation bench screenshots clean browser imap postgres docs docs-check docs-pages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/digest demo

lint: $(STAMP)
	$(BIN)/ruff format --check digest tests bench
	$(BIN)/ruff check digest tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Every test, under coverage.py (settings in pyproject.toml): the `digest` processes the tests
# start are measured too. scripts/coverage_floor.py fails the run when line or branch coverage of
# digest/ falls below its floor; `.venv/bin/coverage report -m` then lists what no test ran.
COVERAGE_DIR := build/coverage
unit: $(STAMP) browser imap postgres
	rm -rf $(COVERAGE_DIR) && mkdir -p $(COVERAGE_DIR)
	$(BIN)/coverage run -m pytest -q -n $(TEST_WORKERS)
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage json --quiet -o $(COVERAGE_DIR)/coverage.json
	$(BIN)/python scripts/coverage_floor.py $(COVERAGE_DIR)/coverage.json

# The browser test drives Debian's chromium (never a downloaded browser): install it if missing.
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		($$sudo apt-get update -qq && \
		 $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
		echo "chromium could not be installed; the browser test will be skipped"; \
	fi

# The bounce tests read a real IMAP mailbox: Debian's Dovecot, started by the tests themselves.
imap:
	@if [ ! -x /usr/sbin/dovecot ] && command -v apt-get >/dev/null 2>&1; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		($$sudo apt-get update -qq && \
		 $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd) || \
		echo "dovecot-imapd could not be installed; the IMAP bounce test will be skipped"; \
	fi

# The store's tests run against a real PostgreSQL too: Debian's server, a throwaway cluster
# started by the tests themselves (tests/support/postgres.py).
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		($$sudo apt-get update -qq && \
		 $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) || \
		echo "postgresql could not be installed; the PostgreSQL tests will be skipped"; \
	fi

# Schedules reason in their own zone and record slots in UTC; on a machine whose zone is UTC a
# slip into local time goes unseen. So the schedule and slot tests run once more in a zone far
# from UTC (tests/test_slots.py also switches the process's zone itself). A few seconds.
timezones: $(STAMP)
	TZ=Asia/Tokyo $(BIN)/pytest -q tests/test_slots.py tests/test_cron.py tests/test_schedule.py

test: lint typecheck docs-check unit timezones

# The docs site (Material for MkDocs, installed with .[dev]). `make docs` serves it at
# http://127.0.0.1:8000 and rebuilds it on every edit; `make docs-check` builds it with --strict into
# build/site (git-ignored), so a broken link or anchor, or a page left out of mkdocs.yml's nav,
# fails `make test`. NO_MKDOCS_2_WARNING quiets a notice about MkDocs 2.0 printed on every build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

docs-check: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Regenerate the pages made from the code (tests fail while one is stale).
docs-pages: $(STAMP)
	$(BIN)/python -m digest.cli.reference > docs/reference.md
	$(BIN)/python scripts/docs_pages.py

# Mutation scores of the pure modules that guard formats and inputs (scripts/mutation.py): each
# against its own unit tests, in a scratch copy. Minutes per module, so not part of `make test`;
# `make mutation MODULES="tokens cron"` runs some of them. docs/benchmarks.md has the figures.
mutation: $(STAMP)
	$(BIN)/python scripts/mutation.py $(MODULES)

# Each script prints its own figures and adds its goals' rows to BENCH_RESULTS; the last step
# prints those rows as one table.
bench: export BENCH_RESULTS := $(CURDIR)/.bench-results
bench: $(STAMP)
	@rm -f $(BENCH_RESULTS)
	$(BIN)/python bench/preview.py
	$(BIN)/python bench/collect.py
	@command -v smtp-sink >/dev/null 2>&1 || test -x /usr/sbin/smtp-sink || \
		$$([ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq postfix
	$(BIN)/python bench/send.py
	$(BIN)/python bench/inline.py
	$(BIN)/python bench/signup.py
	$(BIN)/python bench/bounces.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/libraries.py
	@$(BIN)/python -m bench.goals

# Screenshots of the default email and the web pages for the docs (Debian's chromium; pngquant
# keeps them small).
screenshots: $(STAMP) browser
	@command -v pngquant >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		$$([ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq pngquant || echo "pngquant not installed; screenshots stay larger"
	$(BIN)/python scripts/screenshots.py
	$(BIN)/python scripts/web_screenshots.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache demo-output build/site

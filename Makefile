# ChatOpenAII - the front door.
#   make run    build everything and start the app on 127.0.0.1:8080 (SQLite in ./data)
#   make test   build with ASan+UBSan and run every test suite
#   make bench  run the benchmarks in bench/
# Switches: T=<unit test name> limits `make unit` to one suite.

BUILD      ?= build
ASAN_BUILD ?= build-asan
BIN        := $(BUILD)/server/chatopenaii
ASAN_BIN   := $(ASAN_BUILD)/server/chatopenaii

.PHONY: all run test unit api deps deps-test build build-asan web bench bench-gateway bench-scale bench-open clean check coverage fuzz

all: build

deps:
	@bash scripts/deps.sh

deps-test:
	@bash scripts/deps.sh test

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

build-asan: deps-test $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# The web app (web/), built from its lockfile (npm ci only when it changed).
web:
	@cd web && if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	  npm ci --no-audit --no-fund --loglevel=error; fi && npm run build

run: build web
	@mkdir -p data
	CHATOPENAII_DATA_DIR=$${CHATOPENAII_DATA_DIR:-./data} $(BIN) serve

unit: build-asan
	@bash tests/run-unit.sh $(ASAN_BUILD) $(T)

api: build-asan
	@COAI_BIN=$(CURDIR)/$(ASAN_BIN) bash tests/run-api.sh

test: build-asan web
	@bash tests/run-all.sh $(ASAN_BUILD)

# the performance budget: every benchmark, one table (bench/README.md)
bench: build web
	@cd tests/e2e && if [ ! -d node_modules ]; then PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error; fi
	@bash bench/run.sh $(BIN)

bench-gateway: build
	@bash bench/gateway/run.sh $(BIN)

# one instance versus two behind nginx, on PostgreSQL
bench-scale: build
	@bash bench/scale/run.sh $(BIN)

# a 2,000-message chat opened in headless chromium (Playwright from tests/e2e)
bench-open: build web
	@cd tests/e2e && if [ ! -d node_modules ]; then PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error; fi
	@node bench/web/open.mjs $(BIN)

# line coverage of the C server and the web app, each at least 80%
coverage: deps-test
	@bash scripts/coverage.sh

# libFuzzer harnesses, FUZZ_SECONDS each (default 60)
fuzz:
	@bash scripts/deps.sh fuzz
	@bash server/fuzz/run.sh $${FUZZ_SECONDS:-60}

check:
	@bash scripts/check.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-cov build-fuzz

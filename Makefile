# Two commands matter: `make demo` (the plant, the agent and its KPIs, no external server)
# and `make test` (the whole suite against real Mosquitto, InfluxDB, Modbus and OPC UA servers).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint bench install system-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
# the Sparkplug interop test's independent host; it pins paho-mqtt<2, which it does not use
# there, so it cannot sit in the dev extra next to the agent's paho 2 (docs/sparkplug.md)
	$(BIN)/python -m pip install --quiet --no-deps 'pysparkplug==0.6.1'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edge-agent demo --duration $${DURATION:-60}

system-deps:
	bash scripts/install-system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $${PYTEST_ARGS:-}

lint: $(STAMP)
	$(BIN)/ruff check edge_agent simulators tests benchmarks
	$(BIN)/mypy edge_agent

bench: $(STAMP) system-deps
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

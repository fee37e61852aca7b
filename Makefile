# The README's two commands: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install prometheus test lint unit demo bench chaos clean

$(STAMP): pyproject.toml
	@# Debian ships venv's ensurepip in a separate package.
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  echo "installing python3-venv (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# devtools/ (emulated API server, simulated fleet, demo) is not part of the wheel: the dev venv
	@# finds it through this path entry instead.
	$(PY) -c 'import pathlib, site; pathlib.Path(site.getsitepackages()[0], "infercast-devtools.pth").write_text("$(CURDIR)\n")'
	touch $(STAMP)

install: $(STAMP) prometheus

# Real Prometheus from Debian's package; the tests and the demo start their own instances on loopback.
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing prometheus (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

lint: $(STAMP)
	$(VENV)/bin/ruff check controller forecasting policies devtools tests benchmarks
	$(VENV)/bin/ruff format --check controller forecasting policies devtools tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# pytest's exit code 5 (no tests collected) is a failure here, as every non-zero code is.
test: install lint
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=15

# The long fault-injection run (>= 50 kills of the operator; docs/reliability.md shows its table) and every
# property test at 10,000 examples (the hypothesis profile "chaos", tests/conftest.py). Tens of minutes.
CHAOS_PROPERTIES := tests/test_crd_parser_agreement.py tests/test_history.py tests/test_policy_properties.py \
	tests/test_policy_traffic_properties.py tests/test_policy_predictive.py
chaos: install
	@# Its own basetemp: other pytest runs on the machine rotate the default one away during a long run.
	INFERCAST_CHAOS=long INFERCAST_CHAOS_REPORT=results/chaos.json nice -n 10 \
	  $(VENV)/bin/pytest -q -p no:cacheprovider -s --basetemp=results/chaos-run tests/test_chaos.py
	nice -n 10 $(VENV)/bin/pytest -q -p no:cacheprovider --hypothesis-profile=chaos $(CHAOS_PROPERTIES)

demo: install
	$(PY) -m devtools.demo

bench: install
	$(PY) benchmarks/forecast.py
	$(PY) benchmarks/nab.py --data ../shared/data/nab/data --out results/nab --score

clean:
	rm -rf $(VENV) results .pytest_cache .mypy_cache .ruff_cache

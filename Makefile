# Two commands set everything up on a fresh machine with python3: `make demo` and `make test`.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8080

.PHONY: demo test lint bench bench-quick clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VPY) -m tpd2py demo.app:app --host 127.0.0.1 --port $(PORT) --access-log -

lint: $(STAMP)
	$(VPY) -m ruff check tpd2py tests bench demo examples
	$(VPY) -m mypy tpd2py

test: lint
	$(VPY) -m pytest tests

bench: $(STAMP)
	$(VPY) -m pip install -q -e '.[test,bench]'
	$(VPY) bench/run.py $(ARGS)

bench-quick: $(STAMP)
	$(VPY) -m pip install -q -e '.[test,bench]'
	$(VPY) bench/run.py --quick $(ARGS)

clean:
	rm -rf $(VENV) bench/out .pytest_cache .mypy_cache .ruff_cache

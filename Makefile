# Two commands do everything: `make demo` (install + run the pipeline on generated data + show
# recommendations) and `make test` (install + run the tests). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DS ?= $(shell date -u +%F)

.PHONY: demo web test test-slow test-all install bench dist clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements/constraints.txt -e ".[test,airflow]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/recjob demo --conf conf/local.yaml --ds $(DS)

web: $(STAMP)  # the pages of the published runs, at http://127.0.0.1:8080/
	$(BIN)/recjob web --conf conf/local.yaml

test: $(STAMP)  # the fast tier: unit and small Spark tests
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)  # whole pipelines and real `airflow dags test` runs
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: $(STAMP)  # both tiers, as CI runs them
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/topk.py

dist: $(STAMP)  # the package for spark-submit --py-files (a .zip: Spark does not put .whl on the executors' path)
	rm -rf dist build
	$(BIN)/pip wheel --quiet --no-deps -w dist .
	cp dist/recjob-*.whl dist/recjob.zip

clean:
	rm -rf recjob-data airflow-home metastore_db derby.log spark-warehouse

# logoid — `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_HOME ?= $(CURDIR)/demo-home
PYTEST_ARGS ?=
DATA ?= $(CURDIR)/../shared/data
NAME ?=
ARGS ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help install demo test test-fast lint bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[ocr,milvus,dev]"
	touch $@

install: $(VENV)/.installed ## Create .venv and install logoid with its offline models (torch pinned)

demo: install ## Build the built-in demo catalog's index and identify a demo photo
	LOGOID_HOME=$(DEMO_HOME) $(BIN)/logoid demo

test: install ## Run the tests (fast unit tests + real-weight tests)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install ## Only the fast unit tests on tiny fakes
	$(BIN)/python -m pytest -m "not real" $(PYTEST_ARGS)

lint: install ## ruff + mypy
	$(BIN)/ruff check logoid engine index augment finetune catalog tests bench
	$(BIN)/mypy logoid engine index augment finetune catalog --ignore-missing-imports

bench: install ## Benchmarks: speed + accuracy (needs ../shared/data); NAME=speed [ARGS=...] runs one, NAME=list names them
	$(BIN)/python -m bench $(if $(NAME),$(NAME) $(ARGS),run --data $(DATA) $(ARGS))

clean: ## Remove the demo home and caches (keeps .venv)
	rm -rf $(DEMO_HOME) .pytest_cache .ruff_cache .mypy_cache

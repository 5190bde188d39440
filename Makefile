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

.PHONY: help install browser bench-fonts demo serve screenshots test test-fast lint bench clean
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[ocr,milvus,milvus-server,server,dev]"
	touch $@

install: $(VENV)/.installed browser ## Create .venv and install logoid with its offline models (torch pinned)

browser: ## Debian's Chromium + ChromeDriver (browser tests, screenshots), installed when missing
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium chromium-driver; }

# Fonts for the roster logos (bench/_logos.py): heavy, serif, blackletter, script and display faces from Debian.
BENCH_FONTS := fonts-dejavu-core fonts-liberation fonts-freefont-ttf fonts-urw-base35 fonts-cantarell \
	fonts-comfortaa fonts-blankenburg fonts-gamaliel fonts-gotico-antiqua fonts-klaudia-berenika \
	fonts-kaushanscript fonts-leckerli-one fonts-lobster fonts-linuxlibertine fonts-ebgaramond \
	fonts-league-spartan fonts-bebas-neue fonts-yanone-kaffeesatz fonts-oldstandard fonts-radisnoir \
	fonts-staypuft fonts-okolaks fonts-adf-oldania fonts-apropal fonts-f500 fonts-dustin fonts-cabin \
	fonts-play fonts-jura fonts-beteckna fonts-isabella fonts-breip

bench-fonts: ## Debian font packages the roster-logo generator draws with (bench/_logos.py), installed when missing
	@dpkg -s $(BENCH_FONTS) >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $(BENCH_FONTS); }

demo: install ## Build the built-in demo catalog's index and identify a demo photo
	LOGOID_HOME=$(DEMO_HOME) $(BIN)/logoid demo

serve: demo ## Serve the demo catalog: web page and HTTP API at http://127.0.0.1:8000/
	LOGOID_HOME=$(DEMO_HOME) $(BIN)/logoid serve

screenshots: demo ## Screenshots of the web page answering a demo photo (docs/img/, shown in the README)
	LOGOID_HOME=$(DEMO_HOME) $(BIN)/python -m tests.browser screenshots docs/img

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

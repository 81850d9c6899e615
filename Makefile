# Two commands for a fresh machine (see README.md):
#   make lab    create .venv, install the workbook, open JupyterLab at the first notebook
#   make test   create .venv, install the workbook with its test extras, lint, run every test
#
#   make test-all   what CI runs: make test on each of CI_PYTHONS, each in its own .venv-X.Y,
#                   then make book-test once, with the last of them
#   make book       the workbook as a static site in build/book/html (book/build.py)
#   make book-test  make book, then open the site in Chromium (tests/test_site.py)
#   make binder     the mybinder.org link for this checkout, from its git remote (book/binder.py)
#
# Options: make lab PYTHON=python3.13 PORT=8890    make test PYTEST_ARGS="-k environment"
#          make test PYTEST_WORKERS=   (one process, in order: a failure's output read more easily)

PYTHON ?= python3
PORT ?= 8888
NOTEBOOK ?= notebooks/00_start_here.ipynb
PYTEST_ARGS ?=
# Two pytest workers (pytest-xdist), each taking a whole test file at a time: the notebooks
# run one after another on one worker while the other runs the rest. The timing checks are
# ratios built to hold with another program busy (README, under "On your machine"). Tests
# marked `solo` need the cores to themselves: they run after the rest, in one process.
PYTEST_WORKERS ?= -n 2 --dist loadfile
VENV ?= .venv
# The versions CI tests: the last azure-functions 1.x Python it defaults to, and the 3.13+ worker.
CI_PYTHONS ?= python3.11 python3.13

# pyenv keeps several Pythons side by side, but its `python3.13` shim refuses to run unless
# 3.13 is selected (pyenv global/local): then use that installed interpreter directly.
PYTHON_EXE := $(or $(shell $(PYTHON) -c '' >/dev/null 2>&1 && echo '$(PYTHON)' || \
	{ v=$$(pyenv whence '$(PYTHON)' 2>/dev/null | tail -n 1); \
	  [ -n "$$v" ] && echo "$$(pyenv root)/versions/$$v/bin/$(PYTHON)"; }),$(PYTHON))
VPY := $(VENV)/bin/python
LINT_PATHS := $(wildcard src tests sample_functions notebooks book benchmarks)
# JupyterLab refuses to run as root unless told to (containers, CI, some workshop VMs).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

# The workbook is the engine with its lab extra (JupyterLab, widgets, plots); the engine alone
# is what `pip install` of the wheel gives (throughput-lab on the command line).
# The test install: the workbook with its test, browser and load (Locust) extras.
TEST_SPEC := ".[lab,test,browser,load]"
# Specs with commas live in variables: inside $(call quietly,...) a comma splits arguments.
BOOK_SPEC := ".[lab,book]"
NO_NEWS := "@jupyterlab/apputils-extension:announcements"
# Test only: Microsoft's worker dispatch code, the oracle the engine is checked against
# (tests/oracle). It declares Python >= 3.13 and installs normally there; its dispatch path
# also runs on 3.10-3.12, where it goes in without pip's dependency and version checks.
ORACLE := azure-functions-runtime==1.3.0 azurefunctions-extensions-base==1.2.0
# Expanded when the install runs, once $(VPY) exists.
ORACLE_SPEC = $(if $(filter 1,$(shell $(VPY) -c 'import sys; print(int(sys.version_info >= (3, 13)))' 2>/dev/null)),\
	$(ORACLE),--no-deps --ignore-requires-python $(ORACLE))

# Run a command with its output kept in $(VENV)/install.log; print all of it if it fails.
quietly = if ! $(1) >$(VENV)/install.log 2>&1; then \
	cat $(VENV)/install.log >&2; \
	printf 'make: FAILED: %s (its output is above, and in $(VENV)/install.log)\n' \
		'$(subst ','\'',$(strip $(1)))' >&2; \
	exit 1; fi

# Azurite, the storage emulator queue triggers run against (notebook 11, its tests): the npm
# package pinned in .azurite/package.json and its lock file, installed with npm ci.
AZURITE := .azurite/node_modules/.installed
NO_NODE := "make: npm (Node.js 18 or newer) is needed for Azurite, the queue emulator of \
notebook 11: https://nodejs.org, or conda install -c conda-forge nodejs"

.PHONY: help lab test test-all book book-test binder clean azurite-if-node

help:
	@echo "make lab    install into $(VENV) and open JupyterLab at $(NOTEBOOK)"
	@echo "make test   install into $(VENV) with the test extras, run ruff, then pytest"
	@echo "make test-all  make test on each of $(CI_PYTHONS), then make book-test (what CI runs)"
	@echo "make book   execute the notebooks (or reuse the tests' executed copies), build the site"
	@echo "make binder the mybinder.org link that opens this checkout (from its git remote)"
	@echo "make clean  remove $(VENV) and .azurite/node_modules (start over, e.g. after changing PYTHON)"

# A $(VENV) made by another Python would quietly stand in for the PYTHON asked for.
same_python = @if [ "$(origin PYTHON)" = "command line" ]; then \
	want=$$('$(PYTHON_EXE)' -c 'import platform; print(platform.python_version())'); \
	have=$$($(VPY) -c 'import platform; print(platform.python_version())'); \
	[ "$$want" = "$$have" ] || { echo "make: $(VENV) runs Python $$have, not $(PYTHON) ($$want)." \
		"Start over with make clean, or keep both: VENV=.venv-$${want%.*}" >&2; exit 1; }; fi

# Quiet where nothing is wrong: open a browser only where Python finds one (a container or an
# SSH session has none, and JupyterLab would warn "No web browser found"), and no language
# server scan (the workbook uses none; jupyter_lsp would list every one it did not find).
OPEN_BROWSER = $(shell '$(PYTHON_EXE)' -c 'import webbrowser; webbrowser.get()' >/dev/null 2>&1 \
	&& echo True || echo False)

lab: $(VENV)/.installed-lab azurite-if-node
	$(same_python)
	$(VPY) -m jupyter lab --ip=127.0.0.1 --port=$(PORT) $(ALLOW_ROOT) \
		--ServerApp.open_browser=$(OPEN_BROWSER) --LanguageServerManager.autodetect=False \
		--ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/$(NOTEBOOK)

test: $(VENV)/.installed-test $(AZURITE)
	$(same_python)
	$(VPY) -m ruff check $(LINT_PATHS)
	$(VPY) -m ruff format --check $(LINT_PATHS)
ifeq ($(strip $(PYTEST_WORKERS)),)
	$(VPY) -m pytest $(PYTEST_ARGS)
else
	$(VPY) -m pytest $(PYTEST_WORKERS) --solo=exclude $(PYTEST_ARGS)
	$(VPY) -m pytest --solo=only $(PYTEST_ARGS)
endif

# One virtual environment per version, so a 3.11 .venv never meets a 3.13 interpreter.
# Every version runs even when one fails, so CI shows both results. Tests marked `once`
# (pyproject.toml: they behave the same on every Python) run with the first version only,
# README's own `make test` on the default Python; everything else runs on each. The site
# is built once, with the last Python, from the notebooks its tests just executed
# (build/executed/). Each phase's time is printed at the end.
test-all:
	@failed=""; times=""; all_began=$$(date +%s); \
	set -- $(CI_PYTHONS); first=$$1; for last in $(CI_PYTHONS); do :; done; \
	for py in $(CI_PYTHONS); do \
		only=""; [ "$$py" = "$$first" ] || only='-m "not once"'; \
		echo "== make test PYTHON=$$py VENV=.venv-$${py#python} $${only:+PYTEST_ARGS='$$only'}"; \
		began=$$(date +%s); \
		$(MAKE) --no-print-directory test PYTHON=$$py VENV=.venv-$${py#python} \
			$${only:+PYTEST_ARGS="$$only"} || failed="$$failed $$py"; \
		times="$$times  make test $$py: $$(( $$(date +%s) - began )) s\n"; \
	done; \
	echo "== make book-test PYTHON=$$last VENV=.venv-$${last#python}"; \
	began=$$(date +%s); \
	$(MAKE) --no-print-directory book-test PYTHON=$$last VENV=.venv-$${last#python} \
		|| failed="$$failed book-test"; \
	times="$$times  make book-test: $$(( $$(date +%s) - began )) s\n"; \
	printf "make test-all: phase times\n$$times  in all: %s s\n" "$$(( $$(date +%s) - all_began ))"; \
	if [ -n "$$failed" ]; then echo "make test-all: failed:$$failed" >&2; exit 1; fi

# Notebooks the tests executed (build/executed/, still matching the stored notebook) are
# published as they are; any other notebook is executed here first.
book: $(VENV)/.installed-book azurite-if-node
	$(same_python)
	$(VPY) book/build.py

# The built site in Chromium: landing page and a notebook page, with their figures.
book-test: book $(VENV)/.installed-test
	THROUGHPUT_LAB_SITE="$(CURDIR)/build/book/html" $(VPY) -m pytest tests/test_site.py

# Only the standard library: no virtual environment needed. One line either way: the link,
# or (exit 1) what to do when the checkout has no public git remote.
binder:
	@'$(PYTHON_EXE)' book/binder.py

clean:
	rm -rf $(VENV) .azurite/node_modules

$(AZURITE): .azurite/package.json .azurite/package-lock.json | $(VPY)
	@command -v npm >/dev/null || { echo $(NO_NODE) >&2; exit 1; }
	@echo "Installing Azurite into .azurite with npm (quiet)"; \
	$(call quietly,npm ci --prefix .azurite --no-audit --no-fund) && touch $@

# make lab works without Node.js: only notebook 11 needs it, and says so.
azurite-if-node:
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(AZURITE); \
	else echo $(NO_NODE) >&2; fi

# Azure Functions runs Python 3.10-3.14 (Learn's supported-languages table).
$(VPY):
	@command -v '$(PYTHON_EXE)' >/dev/null || { echo "make: $(PYTHON) not found." \
		"Install Python 3.10-3.14 and pass it: make $(MAKECMDGOALS) PYTHON=python3.13" >&2; exit 1; }
	@'$(PYTHON_EXE)' -c 'import sys; v = sys.version_info[:2]; ok = (3, 10) <= v <= (3, 14); \
		ok or print("make: Python 3.10-3.14 is needed (the versions Azure Functions runs);", \
		"$(PYTHON) is %d.%d. Try: make $(MAKECMDGOALS) PYTHON=python3.13" % v, file=sys.stderr); \
		sys.exit(not ok)'
	'$(PYTHON_EXE)' -m venv $(VENV)

# Upgrade pip, then one pip call for everything (pip is slow to start and to resolve).
# A stamp per install; editing pyproject.toml reinstalls.
$(VENV)/.installed-lab: pyproject.toml | $(VPY)
	$(same_python)
	@if [ $(VENV)/.installed-test -nt pyproject.toml ]; then touch $@; exit 0; fi; \
	echo "Installing the workbook into $(VENV) (quiet: pip's output is shown only on failure)"; \
	$(call quietly,$(VPY) -m pip install --upgrade pip) && \
	$(call quietly,$(VPY) -m pip install -e ".[lab]") && \
	$(call quietly,$(VENV)/bin/jupyter labextension disable $(NO_NEWS)) && \
	touch $@

$(VENV)/.installed-book: pyproject.toml | $(VPY)
	$(same_python)
	@echo "Installing the workbook with its book extra (Sphinx, MyST-NB) into $(VENV) (quiet)"; \
	$(call quietly,$(VPY) -m pip install --upgrade pip) && \
	$(call quietly,$(VPY) -m pip install -e $(BOOK_SPEC)) && \
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VPY)
	$(same_python)
	@echo "Installing the workbook with its test, browser and load extras into $(VENV) (quiet)"; \
	$(call quietly,$(VPY) -m pip install --upgrade pip) && \
	$(call quietly,$(VPY) -m pip install -e $(TEST_SPEC)) && \
	$(call quietly,$(VPY) -m pip install $(ORACLE_SPEC)) && \
	$(call quietly,$(VENV)/bin/jupyter labextension disable $(NO_NEWS)) && \
	touch $@

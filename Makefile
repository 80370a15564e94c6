# Two commands on a fresh machine: `make demo` (the course's main job) and `make test`.
# Each creates and fills .venv when it is missing. See DEVELOPERS.md for the torch build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build to install; on a GPU farm pick the wheel for its CUDA (DEVELOPERS.md).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: sandbox-tool browser-tool demo test release check-release student-bundle lab clean-venv

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (nbgrader 0.9); set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Student code is graded inside a bubblewrap sandbox: install Debian's bubblewrap when we can
# (root with apt), else say how. The tests fail under CI=true when it is still missing.
sandbox-tool:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq bubblewrap >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq bubblewrap)); \
	  else echo "bubblewrap (bwrap) is missing: install it (sudo apt-get install bubblewrap) to grade in the sandbox"; fi; }
	@command -v bwrap >/dev/null 2>&1 && echo "sandbox: $$(bwrap --version)" || true

# The browser tests (the prediction page, the student journey in JupyterLab) drive Debian's Chromium
# through Debian's chromium-driver: install them when we can (root with apt). Under CI=true the tests
# fail when they are still missing; elsewhere they skip with the reason.
browser-tool:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)); \
	  else echo "chromium and chromium-driver are missing: install them (sudo apt-get install chromium chromium-driver) for the browser tests"; fi; }
	@command -v chromium >/dev/null 2>&1 && echo "browser: $$(chromium --version 2>/dev/null)" || true

demo: $(VENV)/.installed sandbox-tool
	$(PY) -m helpers demo

test: $(VENV)/.installed sandbox-tool browser-tool
	$(PY) -m pytest

# Instructors: rebuild release/ from source/ with nbgrader, or check that it matches.
release: $(VENV)/.installed
	$(PY) -m helpers release

check-release: $(VENV)/.installed
	$(PY) -m helpers check-release

# What a student gets: dist/cifar10-course-student/ and .tar.gz (release notebooks, a wheel of helpers
# without the TA-only grading code, no solutions or hidden tests; refused if any would slip in).
student-bundle: $(VENV)/.installed
	$(PY) -m helpers student-bundle

# The instructor's preview of the release notebooks (students get them through the exchange or
# `make student-bundle`). JupyterLab refuses to run as root without --allow-root.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab release/ $(LAB_FLAGS)

clean-venv:
	rm -rf $(VENV)

# Two entry points: `make demo` and `make test`. Each creates .venv when it is
# missing and installs the package (editable) with what that target needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: test demo install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# Synthetic head-CT cohort -> train -> register -> score -> AUROC, offline, a few minutes on a CPU.
demo: $(STAMP)
	$(BIN)/python pipelines/demo.py

clean:
	rm -rf $(VENV) build *.egg-info

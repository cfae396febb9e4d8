# One environment for everything: .venv/ at the repository root with the pinned stack.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench clean

install: $(STAMP)

# Re-run pip only when the package's requirements change; a second `make install` does nothing.
$(STAMP): setup.py
	test -x $(PYTHON) || python3 -m venv $(VENV)
	# pip 25+ rejects a direct-URL dependency deep inside espnet's optional extras; 24.3 installs it.
	$(PYTHON) -m pip install --quiet "pip==24.3.1" "setuptools>=64,<74" wheel
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

test: install
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

lint: install
	$(PYTHON) -m ruff check espnet_ils tests bench
	$(PYTHON) -m ruff format --check espnet_ils tests bench

clean:
	rm -rf $(VENV)

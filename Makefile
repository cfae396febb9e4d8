# One environment for everything: .venv/ at the repository root with the pinned stack.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install tts test lint demo bench clean

install: $(STAMP)

# Re-run pip only when the package's requirements change; a second `make install` does nothing.
$(STAMP): setup.py
	test -x $(PYTHON) || python3 -m venv $(VENV)
	# pip 25+ rejects a direct-URL dependency deep inside espnet's optional extras; 24.3 installs it.
	$(PYTHON) -m pip install --quiet "pip==24.3.1" "setuptools>=64,<74" wheel
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The offline speech synthesisers of the embedded mini corpus (Debian packages; needs root).
tts:
	bash egs2/librispeech_ils/ssl1/local/install_tts.sh

test: install tts
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

lint: install
	$(PYTHON) -m ruff check espnet_ils tests bench
	$(PYTHON) -m ruff format --check espnet_ils tests bench
	shellcheck -x egs2/librispeech_ils/ssl1/*.sh egs2/librispeech_ils/ssl1/local/*.sh egs2/librispeech_ils/ssl1/utils/run.sh

clean:
	rm -rf $(VENV)

# One environment for everything: .venv/ at the repository root with the pinned stack.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-test tts lm-tools test test-fast lint demo device-wheels clean

install: $(STAMP)
install-test: $(TEST_STAMP)

# Re-run pip only when the package's requirements change; a second `make install` does nothing.
# tools/ensure_venv.sh builds $(VENV) with a Python that setup.py accepts, and rebuilds a $(VENV)
# of any other version (make PYTHON3=/path/to/python3.X picks the interpreter).
$(STAMP): setup.py
	bash tools/ensure_venv.sh $(VENV)
	# pip 25+ rejects a direct-URL dependency deep inside espnet's optional extras; 24.3 installs it.
	$(PYTHON) -m pip install --quiet "pip==24.3.1" "setuptools>=64,<74" wheel
	$(PYTHON) -m pip install --quiet -e .
	touch $(STAMP)

# setup.py's test extra on top: pytest, the linters, and transformers, s3prl and espnet_model_zoo,
# which the tests run beside. The demo's environment goes without them: with transformers installed,
# ESPnet imports it in every process (its BART-based encoders and Hugging Face decoder), 2.5 s of
# each process start on 2 cores.
$(TEST_STAMP): $(STAMP)
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $(TEST_STAMP)

# The offline speech synthesisers of the embedded mini corpus (Debian packages: installed as root,
# or through sudo when the user has it; otherwise it stops with the command to run as root).
tts:
	bash egs2/librispeech_ils/ssl1/local/install_tts.sh

# IRSTLM, which builds the word n-gram of decode mode ngram (a Debian package, installed as for tts).
lm-tools:
	bash egs2/librispeech_ils/ssl1/local/install_lm_tools.sh

# The full suite (CI runs it), in two pytest-xdist workers: most of its time is processes starting
# (ESPnet's import is single-threaded), which two workers overlap on 2 cores.
test: install-test tts lm-tools
	$(PYTHON) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests

# Before every commit: every module's tests but the slow ones (pyproject.toml's marker `slow`).
test-fast: install-test
	$(PYTHON) -m pytest -q -p no:cacheprovider -m "not slow" tests

lint: install-test
	$(PYTHON) -m ruff check espnet_ils tests bench egs2/librispeech_ils/ssl1/local
	$(PYTHON) -m ruff format --check espnet_ils tests bench egs2/librispeech_ils/ssl1/local
	cd egs2/librispeech_ils/ssl1 && ../../../$(VENV)/bin/shellcheck -x *.sh local/*.sh steps/*.sh utils/*.sh utils/slurm.pl
	$(VENV)/bin/shellcheck tools/*.sh

# The main job: the whole recipe on the embedded mini corpus (2 CPU cores, within 30 min; RESULTS.md),
# ending with the ILS vs HuBERT table.
demo: install tts
	cd egs2/librispeech_ils/ssl1 && ./run_mini.sh --profile mini
	@echo; echo "ILS vs HuBERT on the mini test set (egs2/librispeech_ils/ssl1/exp_mini/comparison_test.md):"
	@cat egs2/librispeech_ils/ssl1/exp_mini/comparison_test.md
	@echo "Per-layer cluster quality plot: egs2/librispeech_ils/ssl1/exp_mini/cluster_quality_it2_L2_km100/cluster_quality.png"
	@echo "Frozen probes (PER, speaker ID) of these models, into the same table: cd egs2/librispeech_ils/ssl1 && ./run_mini.sh --stage 7 --stop_stage 10 --probe_tasks \"pr sid\""

# Wheels the lent GPU machine lacks for bench/device_check.py (into .whl/, ignored by git).
device-wheels: install
	PYTHON=$(PYTHON) bash bench/fetch_device_wheels.sh

clean:
	rm -rf $(VENV)

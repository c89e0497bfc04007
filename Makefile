# The two commands of the README:
#   make demo   installs into ./.venv (if needed) and runs the offline demo study (snakemake --cores 2)
#   make test   installs into ./.venv (if needed) and runs the test suite
# With an environment of your own (conda, a cluster module), skip make: `pip install -e '.[test]'`,
# then `snakemake --cores N` and `pytest` directly.

PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
# torch is not pinned by the package (bring your own CUDA build); this pair is what `make` installs
# into a fresh .venv when torch is missing. Override e.g. TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test report clean-results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	snakemake --cores $(CORES)

test: install
	python -m pytest

report: install
	snakemake --cores $(CORES) --report report.html

clean-results:
	rm -rf results/*/ logs resources/cache report.html .snakemake

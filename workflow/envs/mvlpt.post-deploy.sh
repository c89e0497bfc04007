#!/usr/bin/env bash
# Runs once inside the new conda environment (snakemake --sdm conda), from Snakemake's working
# directory: install this mvlpt checkout (its dependencies come from mvlpt.yaml).
set -euo pipefail
python -m pip install --no-deps --editable "${MVLPT_SOURCE:-$PWD}"

"""`protocol: reference` in the workflow (issue 27): every training command carries the protocol and its option
values, SoftCPT's multitask runs get SoftCPT's own setting, and with `multitask.source_prompt: averaged` the target
runs of mode init start every seed from the group's averaged prompt (rule `average_group_source`). The groups
checkpoint runs for real (strategy all needs no pairwise table); the rest is a dry-run."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml

from studies import snakemake

CONFIG = {
    "tasks": ["shapes", "shape-colours", "glyph-digits"],
    "methods": ["coop"],
    "seeds": [1, 2],
    "shots": 5,
    "protocol": "reference",
    "model": {"name": "mvlpt-tiny", "pretrained": "synthetic", "init_seed": 0},
    "train": {"epochs": 2, "warmup_epochs": 0},
    "multitask": {"modes": ["init", "joint"], "strategies": ["all"]},
}


def train_options(command: str) -> dict:
    words = shlex.split(command)
    options = {}
    for i, w in enumerate(words):
        if w == "--train-options":
            options.update(json.loads(words[i + 1]))
    return options


@pytest.mark.slow
def test_reference_jobs_carry_the_protocol_softcpts_setting_and_the_averaged_prompt(tmp_path):
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(CONFIG))
    groups = snakemake(tmp_path, "--cores", "1", "results/multitask/groups.csv", configfile=configfile)
    assert groups.returncode == 0, (groups.stdout + groups.stderr)[-3000:]
    res = snakemake(tmp_path, "-n", "-p", "multitask", configfile=configfile)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    commands = [line.removeprefix("Shell command: ") for line in out.splitlines() if line.startswith("Shell command: mvlpt")]
    training = [c for c in commands if c.startswith("mvlpt train")]
    assert training and all("--protocol reference" in c and "--hateful-memes-metric accuracy" in c for c in training)
    for c in training:
        opts = train_options(c)
        want = {"joint_checkpoint": "mean_val", "joint_fewshot": "union", "joint_order": "fixed", "precision": "fp16"}
        assert {k: opts.get(k) for k in want} == want, c
        if "--method softcpt" in c:
            assert (opts["epochs"], opts["batch_size_multitask"], opts["select"], opts["head"]) == (50, 32, "last", "per_task")
        else:
            assert opts["epochs"] == 2 and "select" not in opts
    assert any("--method softcpt" in c for c in training)
    averaged = [c for c in commands if c.startswith("mvlpt multitask average")]
    targets = [c for c in training if "--init-from" in c]
    assert averaged and targets
    for c in targets:
        init = re.search(r"--init-from (\S+)", c).group(1)
        assert init.endswith("/averaged.safetensors") and "{seed}" not in init, c
        assert any(f"--out {init}" in a for a in averaged), "made by average_group_source"
    for a in averaged:
        assert re.search(r"seed1\.safetensors \S+seed2\.safetensors --out", a), a

"""The command line: help for every verb, one-sentence errors with exit status 2, results on success."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mvlpt.cli import build_parser, main


def mvlpt(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mvlpt.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_help_lists_verbs_and_each_verb_documents_its_options(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    assert {"tasks", "split", "features", "train", "info"} <= set(sub.choices)
    parsers = list(sub.choices.items())
    for name, p in parsers:  # every verb, and the verbs of a verb (mvlpt multitask groups, ...)
        text = p.format_help()
        for action in p._actions:
            for opt in action.option_strings:
                assert opt in text, (name, opt)
            if action.dest == "verb" and action.choices:
                parsers.extend((f"{name} {k}", v) for k, v in action.choices.items())
        assert "(default: None)" not in text, name  # an option without a default says what happens instead
    methods = sub.choices["train"]._option_string_actions["--method"].help
    assert all(m in methods for m in ("coop", "vpt", "upt", "softcpt")), methods


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--method", "coop", "--task", "nope", "--output", "nope=x.json"], "unknown task 'nope'"),
        (["train", "--method", "coopp", "--task", "shapes", "--output", "shapes=x.json"], "unknown prompt method 'coopp'"),
        (["train", "--method", "coop", "--task", "shapes", "--task", "shapes", "--output", "shapes=x.json"], "must be distinct"),
        (
            ["train", "--method", "coop", "--task", "shapes", "--train-options", "{epochs: 3}", "--output", "shapes=x.json"],
            "not valid JSON",
        ),
        (["train", "--method", "coop", "--task", "shapes", "--output", "x.json"], "TASK=PATH"),
        # a later --train-options wins; '1e-3' is what YAML 1.1 makes of `lr: 1e-3`
        (
            [
                "train",
                "--method",
                "coop",
                "--task",
                "shapes",
                "--train-options",
                '{"lr": 0.1}',
                "--train-options",
                '{"lr": "1e-3"}',
                "--output",
                "shapes=x.json",
            ],
            "training option lr must be a float, got '1e-3' (YAML reads 1e-3 as text: write 0.001).",
        ),
        (["train", "--method", "coop", "--task", "shapes"], "nothing to write"),
        (["train", "--method", "coop", "--task", "shapes", "--output", "textures=x.json"], "does not train on"),
        (
            ["train", "--method", "coop", "--task", "shapes", "--shots", "0", "--output", "shapes=x.json"],
            "shots must be at least 1",
        ),
        (
            ["train", "--method", "coop", "--task", "shapes", "--method-options", '{"n_ctxx": 3}', "--output", "shapes=x.json"],
            "bad options",
        ),
        (
            ["split", "--task", "shapes", "--seed", "1", "--shots", "100000", "--policy", "strict", "--out", "s.json"],
            "fewer than shots",
        ),
        (
            [
                "train",
                "--method",
                "coop",
                "--task",
                "shapes",
                "--model",
                "ViT-B-16-quickgelu",
                "--pretrained",
                "openai",
                "--output",
                "shapes=x.json",
            ],
            "cannot be downloaded",
        ),
    ],
)
def test_user_errors_are_one_sentence_with_status_2(tmp_path, monkeypatch, run_mvlpt, args, needle):
    """In-process (mvlpt.cli.main, as the console script calls it); the process itself: the next test."""
    monkeypatch.chdir(tmp_path)
    rc, lines, err = run_mvlpt(*args)
    assert rc == 2, err
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "s.json").exists()


def test_a_user_error_ends_the_process_with_status_2_and_one_sentence(tmp_path):
    """`python -m mvlpt.cli` as a workflow rule runs it: exit status 2, one `mvlpt: error:` line, no traceback."""
    r = mvlpt("train", "--method", "coopp", "--task", "shapes", "--output", "shapes=x.json", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith("mvlpt: error:")]
    assert len(lines) == 1 and "unknown prompt method 'coopp'" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.json").exists()


def test_split_and_train_write_their_files(tmp_path):
    split = tmp_path / "split.json"
    assert main(["split", "--task", "shapes", "--seed", "2", "--shots", "5", "--out", str(split)]) == 0
    out = tmp_path / "res" / "coop" / "shapes__shapes" / "seed2.json"
    rc = main(
        [
            "train",
            "--method",
            "coop",
            "--task",
            "shapes",
            "--seed",
            "2",
            "--shots",
            "5",
            "--split",
            f"shapes={split}",
            "--epochs",
            "2",
            "--output",
            f"shapes={out}",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert (res["method"], res["source"], res["target"], res["seed"], res["epochs"]) == ("coop", "shapes", "shapes", 2, 2)
    assert not list(Path(out.parent).glob("*.tmp"))


def test_results_record_their_split_and_weights(tmp_path):
    """A result names the few-shot split it used (by content) and the weights; without --pretrained the tiny
    model uses its shipped weights, `--pretrained none` is the way to a random init."""
    from mvlpt.io import content_hash

    split = tmp_path / "split.json"
    assert main(["split", "--task", "shapes", "--seed", "3", "--shots", "3", "--out", str(split)]) == 0
    pinned = json.loads(split.read_text())
    base = [
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--seed",
        "3",
        "--shots",
        "3",
        "--epochs",
        "1",
        "--train-options",
        '{"warmup_epochs": 0}',
        "--device",
        "cpu",
    ]
    runs = {"pinned": ["--split", f"shapes={split}"], "sampled": [], "random init": ["--pretrained", "none"]}
    res = {}
    for name, extra in runs.items():
        out = tmp_path / name / "seed3.json"
        assert main([*base, *extra, "--output", f"shapes={out}"]) == 0
        res[name] = json.loads(out.read_text())
    expected = content_hash({"train": pinned["train"], "val": pinned["val"]})
    assert res["pinned"]["splits"] == res["sampled"]["splits"] == {"shapes": expected}
    assert res["pinned"]["pretrained"] == res["sampled"]["pretrained"] == "synthetic"
    assert res["pinned"]["config_hash"] == res["sampled"]["config_hash"]
    assert res["random init"]["pretrained"] is None
    assert res["random init"]["config_hash"] != res["sampled"]["config_hash"]
    assert res["sampled"]["test"] > res["random init"]["test"], "the shipped weights learn, a random init does not"

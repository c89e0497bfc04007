"""Bad input ends in one clear sentence and leaves nothing that looks finished (more cases: test_cli.py,
test_train.py, test_elevater_*.py, test_workflow.py)."""

import errno
import json
import os

import numpy as np
import pytest

from mvlpt.cli import main
from mvlpt.errors import MvlptError
from mvlpt.io import write_json
from mvlpt.results import read_result
from mvlpt.tasks import ArraySplit, Task
from mvlpt.tasks.fewshot import make_split


def run_cli(capsys, *args):
    rc = main(list(args))
    err = capsys.readouterr().err.strip().splitlines()
    return rc, [line for line in err if line.startswith("mvlpt: error:")]


def test_missing_split_file(tmp_path, capsys):
    rc, err = run_cli(capsys, "train", "--method", "coop", "--task", "shapes", "--split", f"shapes={tmp_path}/nope.json",
                      "--output", f"shapes={tmp_path}/r.json", "--device", "cpu")
    assert rc == 2 and len(err) == 1 and "does not exist" in err[0]
    assert not (tmp_path / "r.json").exists()


def test_split_file_of_another_task(tmp_path, capsys):
    assert main(["split", "--task", "textures", "--seed", "1", "--shots", "5", "--out", str(tmp_path / "s.json")]) == 0
    rc, err = run_cli(capsys, "train", "--method", "coop", "--task", "shapes", "--split", f"shapes={tmp_path}/s.json",
                      "--output", f"shapes={tmp_path}/r.json", "--device", "cpu")
    assert rc == 2 and "belongs to task 'textures'" in err[0]


def test_split_file_with_other_shots(tmp_path, capsys):
    assert main(["split", "--task", "shapes", "--seed", "1", "--shots", "4", "--out", str(tmp_path / "s.json")]) == 0
    rc, err = run_cli(capsys, "train", "--method", "coop", "--task", "shapes", "--shots", "5", "--split", f"shapes={tmp_path}/s.json",
                      "--output", f"shapes={tmp_path}/r.json", "--device", "cpu")
    assert rc == 2 and "has 4 shots" in err[0]


def test_unknown_device(tmp_path, capsys):
    rc, err = run_cli(capsys, "train", "--method", "coop", "--task", "shapes", "--output", f"shapes={tmp_path}/r.json", "--device", "tpu")
    assert rc == 2 and len(err) == 1 and "tpu" in err[0]


def test_results_file_of_an_older_format(tmp_path):
    path = tmp_path / "seed1.json"
    path.write_text(json.dumps({"format": 0, "acc": 0.5}))
    with pytest.raises(MvlptError, match="has format 0"):
        read_result(path)
    path.write_text("{ truncated")
    with pytest.raises(MvlptError, match="not valid JSON"):
        read_result(path)


def test_unwritable_results_directory(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where a directory should be")  # root ignores chmod, a file does not
    rc, err = run_cli(capsys, "split", "--task", "shapes", "--seed", "1", "--shots", "5", "--out", str(blocker / "s.json"))
    assert rc == 2 and len(err) == 1 and "cannot write" in err[0]


def test_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(MvlptError, match="No space left on device"):
        write_json({"a": 1}, tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []


def test_empty_class_is_named():
    labels = np.array([0] * 10 + [1] * 10)
    split = ArraySplit([f"i{i}" for i in range(20)], labels, np.zeros((20, 8, 8, 3), np.uint8))
    task = Task("toy", ("cat", "dog", "emu"), ("a photo of a {}.",), "accuracy", loader=lambda s, d=None: split)
    with pytest.raises(MvlptError, match="only 0 training images of class 'emu'"):
        make_split(task, 1, 5)


def test_bad_method_option_value(tmp_path, capsys):
    rc, err = run_cli(capsys, "train", "--method", "upt", "--task", "shapes", "--method-options", '{"mix": "some"}',
                      "--output", f"shapes={tmp_path}/r.json", "--device", "cpu")
    assert rc == 2 and "UPT mix must be one of" in err[0]
    assert not (tmp_path / "r.json").exists()

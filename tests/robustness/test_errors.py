"""Bad input ends in one clear sentence and leaves nothing that looks finished (more cases: test_cli.py,
test_train.py, test_elevater_*.py, test_workflow.py)."""

import errno
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import mvlpt.io
from mvlpt.cli import main
from mvlpt.errors import MvlptError
from mvlpt.io import atomic_path, write_json
from mvlpt.study.results import read_result
from mvlpt.tasks import ArraySplit, Task
from mvlpt.tasks.fewshot import make_split
from mvlpt.training.config import TrainConfig


def test_missing_split_file(tmp_path, run_mvlpt):
    rc, err, _ = run_mvlpt(
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--split",
        f"shapes={tmp_path}/nope.json",
        "--output",
        f"shapes={tmp_path}/r.json",
        "--device",
        "cpu",
    )
    assert rc == 2 and len(err) == 1 and "does not exist" in err[0]
    assert not (tmp_path / "r.json").exists()


def test_split_file_of_another_task(tmp_path, run_mvlpt):
    assert main(["split", "--task", "textures", "--seed", "1", "--shots", "5", "--out", str(tmp_path / "s.json")]) == 0
    rc, err, _ = run_mvlpt(
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--split",
        f"shapes={tmp_path}/s.json",
        "--output",
        f"shapes={tmp_path}/r.json",
        "--device",
        "cpu",
    )
    assert rc == 2 and "belongs to task 'textures'" in err[0]


def test_split_file_with_other_shots(tmp_path, run_mvlpt):
    assert main(["split", "--task", "shapes", "--seed", "1", "--shots", "4", "--out", str(tmp_path / "s.json")]) == 0
    rc, err, _ = run_mvlpt(
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--shots",
        "5",
        "--split",
        f"shapes={tmp_path}/s.json",
        "--output",
        f"shapes={tmp_path}/r.json",
        "--device",
        "cpu",
    )
    assert rc == 2 and "has 4 shots" in err[0]


def test_unknown_device(tmp_path, run_mvlpt):
    rc, err, _ = run_mvlpt(
        "train", "--method", "coop", "--task", "shapes", "--output", f"shapes={tmp_path}/r.json", "--device", "tpu"
    )
    assert rc == 2 and len(err) == 1 and "tpu" in err[0]


def test_results_file_of_an_older_format(tmp_path):
    path = tmp_path / "seed1.json"
    path.write_text(json.dumps({"format": 0, "acc": 0.5}))
    with pytest.raises(MvlptError, match="has format 0"):
        read_result(path)
    path.write_text("{ truncated")
    with pytest.raises(MvlptError, match="cannot be read"):
        read_result(path)


def test_unwritable_results_directory(tmp_path, run_mvlpt):
    blocker = tmp_path / "results"
    blocker.write_text("a file where a directory should be")  # root ignores chmod, a file does not
    rc, err, _ = run_mvlpt("split", "--task", "shapes", "--seed", "1", "--shots", "5", "--out", str(blocker / "s.json"))
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


def test_bad_method_option_value(tmp_path, run_mvlpt):
    rc, err, _ = run_mvlpt(
        "train",
        "--method",
        "upt",
        "--task",
        "shapes",
        "--method-options",
        '{"mix": "some"}',
        "--output",
        f"shapes={tmp_path}/r.json",
        "--device",
        "cpu",
    )
    assert rc == 2 and "UPT mix must be one of" in err[0]
    assert not (tmp_path / "r.json").exists()


def test_split_file_of_another_seed(tmp_path, run_mvlpt):
    """A split sampled for seed 2 is not used for seed 1 (the result would claim seed 1)."""
    assert main(["split", "--task", "shapes", "--seed", "2", "--shots", "5", "--out", str(tmp_path / "s.json")]) == 0
    rc, err, _ = run_mvlpt(
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--seed",
        "1",
        "--split",
        f"shapes={tmp_path}/s.json",
        "--output",
        f"shapes={tmp_path}/r.json",
        "--device",
        "cpu",
    )
    assert rc == 2 and len(err) == 1
    assert "was sampled with seed 2, this run's seed is 1; give the split file of seed 1." in err[0]
    assert not (tmp_path / "r.json").exists()


def test_writes_together_appear_together_or_not_at_all(tmp_path, monkeypatch):
    a, b = tmp_path / "a" / "p.safetensors", tmp_path / "b" / "r.json"
    with pytest.raises(RuntimeError):
        with mvlpt.io.write_together():
            write_json({"a": 1}, a)
            assert not a.exists(), "renamed only when the group ends"
            raise RuntimeError("evaluation failed after the first output was written")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [], "no output, no temporary file"

    real = os.replace

    def fail_second(src, dst):
        if str(dst) == str(b):
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", fail_second)
    with pytest.raises(MvlptError, match=r"cannot write \S+r\.json: Input/output error\."):
        with mvlpt.io.write_together():
            write_json({"a": 1}, a)
            write_json({"b": 2}, b)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [], "the first, already renamed, is taken back"
    monkeypatch.setattr(os, "replace", real)
    with mvlpt.io.write_together():
        write_json({"a": 1}, a)
        write_json({"b": 2}, b)
    assert json.loads(a.read_text()) == {"a": 1} and json.loads(b.read_text()) == {"b": 2}


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_keep_the_umask_permissions(tmp_path, umask):
    """Results, tables and prompts get the mode any new file gets (mkstemp alone gives 0600)."""
    old = os.umask(umask)
    try:
        write_json({"a": 1}, tmp_path / "r.json")
        with atomic_path(tmp_path / "p.safetensors") as tmp:  # safetensors writes a file of its own
            save_file({"x": torch.zeros(2)}, str(tmp))
    finally:
        os.umask(old)
    for name in ("r.json", "p.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


@pytest.mark.parametrize(
    "option,value,needle",
    [
        ("lr", float("nan"), "lr must be a finite number > 0, got nan"),
        ("lr", float("inf"), "lr must be a finite number > 0, got inf"),
        ("momentum", float("nan"), "momentum must be a finite number in [0, 1), got nan"),
        ("momentum", 1.5, "momentum must be a finite number in [0, 1), got 1.5"),
        ("weight_decay", float("inf"), "weight_decay must be a finite number >= 0, got inf"),
        ("weight_decay", -1e-4, "weight_decay must be a finite number >= 0, got -0.0001"),
        ("warmup_lr", float("nan"), "warmup_lr must be a finite number >= 0, got nan"),
    ],
)
def test_training_options_must_be_finite(option, value, needle):
    with pytest.raises(MvlptError) as e:
        TrainConfig.from_dict({option: value})
    assert str(e.value) == needle + "."
    with pytest.raises(MvlptError, match=r"warmup_epochs \(5\) must be smaller than epochs \(5\)"):
        TrainConfig.from_dict({"epochs": 5, "warmup_epochs": 5})


def test_config_module_imports_without_torch():
    """The workflow validates `train:` with TrainConfig.from_dict on every Snakemake start: no torch import."""
    code = "import sys, mvlpt.training.config; sys.exit(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')) != [])"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

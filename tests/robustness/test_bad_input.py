"""Bad input (issue 7, part 2) and safe artefacts (part 4): each case ends in one clear sentence and a
non-zero exit status, and leaves nothing that looks finished. This file holds the cases the other
test files do not (test_errors.py, test_cli.py, test_train.py, test_fewshot.py, test_elevater_*.py,
test_tables.py, test_similarity.py, test_devices.py); docs/reliability.md lists them all.

Workflow cases run ``snakemake -n`` (or a real run) on a bad config; CLI cases call ``mvlpt.cli.main``.
"""

import errno
import io
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from fakes import one_sentence
from mvlpt.cli import main
from mvlpt.datasets.images import decode_image
from mvlpt.models.prompts import build_prompt_learner
from mvlpt.tasks import Task, get_task, registry
from mvlpt.training.checkpoints import save_prompt, save_state

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
TINY = ["--pretrained", "synthetic", "--device", "cpu"]


def assert_one_sentence(rc, lines, err, *needles):
    return one_sentence((rc, lines, err), *needles)


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in Path(path).rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------------
# Workflow: a bad config stops `snakemake -n` with a message naming the problem
# --------------------------------------------------------------------------------------------------
BASE = {"tasks": ["shapes", "orientation"], "methods": ["coop"], "seeds": [1], "results_dir": "results", "cache_dir": "cache"}


def snakemake(workdir, config, *args, timeout=300):
    cfg = Path(workdir) / "config.yaml"
    cfg.write_text(json.dumps(config))  # YAML is a superset of JSON
    cmd = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", str(cfg), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)


WORKFLOW_CASES = {
    # case: (config change, what the message must say); unknown task and method, duplicate tasks, empty
    # task list and negative shots: tests/workflow/test_workflow.py::test_config_errors_stop_before_any_job
    "duplicate seeds": ({"seeds": [1, 2, 1]}, r"invalid config: value\(s\) listed more than once in `seeds`: 1\."),
    "zero seeds": ({"seeds": []}, r"invalid config: seeds: \[\] should be non-empty \(see config/README\.md\)\."),
    "tasks not a list": (
        {"tasks": "shapes"},
        r"invalid config: tasks: 'shapes' is not of type 'array' \(see config/README\.md\)\.",
    ),
    "shots of the wrong type": (
        {"shots": "five"},
        r"invalid config: shots: 'five' is neither a number of images per class \(an integer >= 1\) nor a list of "
        r"distinct ones such as \[1, 5, 20\] \(see config/README\.md\)\.",
    ),
    "unknown mode": (
        {"mode": "both"},
        r"invalid config: mode: 'both' is not one of \['joint', 'sequential', 'zero_epoch'\] \(see config/README\.md\)\.",
    ),
    # the JSON schema, as one sentence naming the key
    "training option of the wrong type": (
        {"train": {"epochs": "ten"}},
        r"invalid config: train\.epochs: 'ten' is not of type 'integer'",
    ),
    "misspelt training option": (
        {"train": {"epochz": 3}},
        r"invalid config: train: Additional properties are not allowed \('epochz' was unexpected\)",
    ),
    "misspelt top-level key": ({"seed": [1]}, r"invalid config: Additional properties are not allowed \('seed' was unexpected\)"),
}


@pytest.mark.parametrize("case", list(WORKFLOW_CASES))
def test_bad_config_stops_the_workflow(tmp_path, case):
    change, needle = WORKFLOW_CASES[case]
    res = snakemake(tmp_path, {**BASE, **change}, "-n", "--cores", "1")
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert re.search(needle, out), out
    assert "Traceback" not in out, out
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_more_shots_than_a_class_has_images_under_the_strict_policy(tmp_path):
    """The preflight stops the run before any job; without it, the split job stops with the sentence in its log.
    (Under the default policy, `available`, the class gives all it has: tests/tasks/test_fewshot.py.)"""
    config = {**BASE, "tasks": ["shapes"], "shots": 1000, "fewshot_policy": "strict"}
    split = "cache/splits/shapes/shots1000_seed1.json"
    sentence = (
        "task 'shapes' has only 48 training images of class 'circle' (6 classes short in all), fewer than "
        "shots=1000; lower shots, or use the few-shot policy 'available' (ELEVATER's: take every image such a "
        "class has)."
    )
    res = snakemake(tmp_path, config, "--cores", "1", split)
    assert res.returncode != 0 and "preflight: the study cannot run through" in res.stderr, res.stdout + res.stderr
    assert "shapes" in res.stderr and "strict" in res.stderr
    assert not (tmp_path / "logs/fewshot_split").exists() and not (tmp_path / split).exists()

    res = snakemake(tmp_path, {**config, "preflight": False}, "--cores", "1", split)
    assert res.returncode != 0, res.stdout + res.stderr
    log = (tmp_path / "logs/fewshot_split/shapes/shots1000_seed1.log").read_text()
    assert f"mvlpt: error: {sentence}" in log, log
    assert not (tmp_path / split).exists()


# --------------------------------------------------------------------------------------------------
# Toy tasks: an empty class, corrupt images
# --------------------------------------------------------------------------------------------------
def _png(seed=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class FileSplit:
    """A split of image files on disk, decoded on demand like the ELEVATER loaders do."""

    def __init__(self, paths, labels):
        self.paths, self.ids, self.labels = list(paths), [p.name for p in paths], np.asarray(labels, dtype=np.int64)

    def __len__(self):
        return len(self.paths)

    def image(self, i):
        return decode_image(self.paths[i])


def register_toy(monkeypatch, name, loader, classes=("cat", "dog")):
    registry._ensure_builtin()
    task = Task(name, tuple(classes), ("a photo of a {}.",), "accuracy", loader=loader)
    monkeypatch.setitem(registry._REGISTRY, name, task)
    return task


def test_empty_class_stops_split_and_train(tmp_path, monkeypatch, run_mvlpt):
    paths = []
    for i in range(8):
        paths.append(tmp_path / "img" / f"{i}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        paths[-1].write_bytes(_png())
    split = FileSplit(paths, [0] * 4 + [1] * 4)  # class 'emu' has no image at all
    register_toy(monkeypatch, "toy-empty", lambda s, d=None: split, classes=("cat", "dog", "emu"))
    rc, lines, err = run_mvlpt("split", "--task", "toy-empty", "--seed", "1", "--shots", "2", "--out", tmp_path / "s.json")
    assert_one_sentence(rc, lines, err, r"task 'toy-empty' has only 0 training images of class 'emu'")
    rc, lines, err = run_mvlpt(
        "train",
        "--method",
        "coop",
        "--task",
        "toy-empty",
        "--shots",
        "2",
        "--epochs",
        "2",
        "--output",
        f"toy-empty={tmp_path}/r.json",
        *TINY,
    )
    assert_one_sentence(rc, lines, err, r"only 0 training images of class 'emu'")
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_training_image_stops_train_naming_the_file(tmp_path, monkeypatch, run_mvlpt, damage):
    folder = tmp_path / "img"
    folder.mkdir()
    paths = []
    for i in range(8):
        data = _png(i)
        data = data[: len(data) // 2] if damage == "truncated" else b"not an image at all"
        paths.append(folder / f"{i}.png")
        paths[-1].write_bytes(data)
    split = FileSplit(paths, [0, 1] * 4)
    register_toy(monkeypatch, "toy-corrupt", lambda s, d=None: split)
    rc, lines, err = run_mvlpt(
        "train",
        "--method",
        "vpt",
        "--task",
        "toy-corrupt",
        "--shots",
        "2",
        "--epochs",
        "2",
        "--output",
        f"toy-corrupt={tmp_path}/r.json",
        *TINY,
    )
    reason = (
        r"OSError: image file is truncated" if damage == "truncated" else r"UnidentifiedImageError: cannot identify image file"
    )
    assert_one_sentence(
        rc, lines, err, rf"corrupt image {re.escape(str(folder))}/\d\.png \({reason}", r"`mvlpt data check --images` lists"
    )
    assert not (tmp_path / "r.json").exists()


# --------------------------------------------------------------------------------------------------
# Training: NaN loss, options, checkpoints of another run
# --------------------------------------------------------------------------------------------------
def test_nan_loss_stops_train_and_writes_nothing(tmp_path, run_mvlpt):
    out, prompt = tmp_path / "res" / "r.json", tmp_path / "res" / "p.safetensors"
    rc, lines, err = run_mvlpt(
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--shots",
        "3",
        "--train-options",
        '{"epochs": 3, "lr": 1e30, "warmup_epochs": 0}',
        "--output",
        f"shapes={out}",
        "--save-prompt",
        f"shapes={prompt}",
        *TINY,
    )
    assert_one_sentence(rc, lines, err, r"the training loss became nan at epoch \d+, step \d+ .*lower the learning rate")
    assert not out.exists() and not prompt.exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--train-options", '{"epochs": "ten"}'], r"training option epochs must be a int, got 'ten'\."),
        (["--train-options", '{"epochs": 3, "warmup_epochs": 3}'], r"warmup_epochs \(3\) must be smaller than epochs \(3\)"),
        (["--method-options", "[16]"], r"--method-options must be a JSON object, got '\[16\]'\."),
        (["--seed", "1", "--seed", "1"], r"a run needs one or more distinct seeds, got \[1, 1\]\."),
        (["--model", "ViT-Nope-16"], r"unknown open_clip model 'ViT-Nope-16'"),
        (
            ["--model", "ViT-B-16", "--pretrained", "no-such-tag"],
            r"open_clip has no pretrained tag 'no-such-tag' for model 'ViT-B-16'",
        ),
        (["--train-options", '{"momentum": NaN}'], r"momentum must be a finite number in \[0, 1\), got nan\."),
        (["--train-options", '{"lr": Infinity}'], r"lr must be a finite number > 0, got inf\."),
        (
            ["--save-prompt", "textures=p.safetensors"],
            r"an output is requested for task 'textures', which this run does not train on\.",
        ),
    ],
    ids=[
        "option of the wrong type",
        "warm-up as long as training",
        "method options not an object",
        "duplicate seeds",
        "unknown model",
        "unknown pretrained tag",
        "NaN momentum",
        "infinite lr",
        "prompt of a task not trained on",
    ],
)
def test_bad_train_arguments(tmp_path, run_mvlpt, args, needle):
    base = ["train", "--method", "coop", "--task", "shapes", "--output", f"shapes={tmp_path}/r.json", "--device", "cpu"]
    rc, lines, err = run_mvlpt(*base, *args)
    assert_one_sentence(rc, lines, err, needle)
    assert files_under(tmp_path) == []


def provenance(**kw):
    """The provenance of a prompt trained on orientation, seed 1, 3 shots, with the tiny model's shipped weights."""
    prov = {
        "task": "orientation",
        "tasks": ["orientation"],
        "seed": 1,
        "shots": 3,
        "model": "mvlpt-tiny",
        "pretrained": "synthetic",
        "init_seed": 0,
        "config_hash": "0" * 16,
        "splits": {"orientation": "0" * 64},
        "best_epoch": 1,
        "mvlpt_version": "0",
    }
    prov.update(kw)
    return prov


@pytest.fixture(scope="module")
def prompt_files(tiny_clip, tmp_path_factory):
    """Prompts for the shapes classes (VPT; CoOp with 4 context tokens; CoOp of other origins) and a training state."""
    d = tmp_path_factory.mktemp("prompts")
    names = get_task("shapes").classnames
    gen = torch.Generator().manual_seed(0)
    save_prompt(build_prompt_learner("vpt", tiny_clip, names, {}, generator=gen), d / "vpt.safetensors", provenance())
    coop4 = build_prompt_learner("coop", tiny_clip, names, {"n_ctx": 4}, generator=gen)
    save_prompt(coop4, d / "coop4.safetensors", provenance())
    coop = build_prompt_learner("coop", tiny_clip, names, {}, generator=gen)
    variants = {
        "random-init": {"pretrained": None},
        "other-model": {"model": "ViT-B-16"},
        "seed2": {"seed": 2},
        "shots5": {"shots": 5},
        "on-target": {"task": "shapes", "tasks": ["shapes"]},
        "genuine": {},
    }
    for name, change in variants.items():
        save_prompt(coop, d / f"coop-{name}.safetensors", provenance(**change))
    # as mvlpt 0.1 wrote them: method and options, but no model, weights or seed
    tensors = {k: v.detach().contiguous() for k, v in coop.state_dict().items()}
    save_file(
        tensors,
        str(d / "coop-old.safetensors"),
        metadata={
            "format": "1",
            "kind": "prompt",
            "method": "coop",
            "options": json.dumps(coop.options()),
            "task": "orientation",
        },
    )
    save_state(
        d / "state.safetensors", {"1/param/ctx": torch.zeros(4, 8)}, {"next_epoch": 1, "config_hashes": ["0" * 16], "best": {}}
    )
    return d


@pytest.mark.parametrize(
    "method,options,file,needle",
    [
        ("coop", "{}", "vpt.safetensors", r"prompt checkpoint \S+vpt\.safetensors is for method 'vpt', not 'coop'\."),
        ("coop", '{"n_ctx": 8}', "coop4.safetensors", r"parameter 'ctx' has shape \(4, \d+\), this coop prompt needs \(8, \d+\)"),
        ("coop", "{}", "state.safetensors", r"\S+state\.safetensors is not an mvlpt prompt checkpoint \(kind='train-state'\)\."),
        ("coop", "{}", "missing.safetensors", r"prompt checkpoint \S+missing\.safetensors does not exist\."),
        (
            "coop",
            "{}",
            "coop-random-init.safetensors",
            r"was trained on model mvlpt-tiny with a random init \(seed 0\), this run uses model mvlpt-tiny with weights "
            r"'synthetic'; a prompt only fits the frozen model it was trained with\.",
        ),
        (
            "coop",
            "{}",
            "coop-other-model.safetensors",
            r"was trained on model ViT-B-16 with weights 'synthetic', this run uses model mvlpt-tiny",
        ),
        (
            "coop",
            "{}",
            "coop-seed2.safetensors",
            r"was trained with seed 2, this run's seed is 1; a transfer starts from the source prompt of the same seed\.",
        ),
        ("coop", "{}", "coop-shots5.safetensors", r"was trained with shots 5, this run's shots is 3"),
        (
            "coop",
            '{"position": "end"}',
            "coop-genuine.safetensors",
            r"was trained with the coop options \{.*'position': 'middle'.*\}, this run asks for \{.*'position': 'end'.*\}\.",
        ),
        (
            "coop",
            "{}",
            "coop-old.safetensors",
            r"prompt checkpoint \S+coop-old\.safetensors does not record which task, seed, model and weights made it \(written by an "
            r"older mvlpt\), so a transfer from it cannot be checked; delete it and rerun its source task's training\.",
        ),
    ],
    ids=[
        "prompt of another method",
        "prompt of another shape",
        "training state as a prompt",
        "missing prompt",
        "prompt of a random init",
        "prompt of another model",
        "prompt of another seed",
        "prompt of other shots",
        "prompt of other options",
        "prompt without provenance",
    ],
)
def test_init_from_a_prompt_that_does_not_fit(tmp_path, run_mvlpt, prompt_files, method, options, file, needle):
    out = tmp_path / "r.json"
    rc, lines, err = run_mvlpt(
        "train",
        "--method",
        method,
        "--method-options",
        options,
        "--task",
        "shapes",
        "--shots",
        "3",
        "--epochs",
        "2",
        "--init-from",
        prompt_files / file,
        "--source",
        "orientation",
        "--output",
        f"shapes={out}",
        *TINY,
    )
    assert_one_sentence(rc, lines, err, needle)
    assert not out.exists()


def test_the_source_comes_from_the_prompt_file(tmp_path, run_mvlpt, prompt_files):
    """--source is optional and checked; without it the source is the file's task, never the target."""
    genuine = prompt_files / "coop-genuine.safetensors"

    def train(prompt, *extra):
        return run_mvlpt(
            "train", "--method", "coop", "--task", "shapes", "--shots", "3", "--epochs", "2", "--init-from", prompt, *TINY, *extra
        )

    out = tmp_path / "r.json"
    rc, lines, err = train(genuine, "--source", "textures", "--output", f"shapes={out}")
    assert_one_sentence(
        rc,
        lines,
        err,
        rf"prompt checkpoint {re.escape(str(genuine))} was trained on 'orientation', not on the "
        r"given source 'textures'; leave out --source \(it is read from the file\)",
    )
    assert not out.exists()
    rc, lines, err = train(genuine, "--output", f"shapes={out}")
    assert rc == 0, err
    rec = json.loads(out.read_text())
    assert (rec["source"], rec["target"], rec["mode"]) == ("orientation", "shapes", "sequential")
    assert rec["init_prompt"] == {
        "task": "orientation",
        "tasks": ["orientation"],
        "seed": 1,
        "config_hash": "0" * 16,
        "splits": {"orientation": "0" * 64},
    }
    on_target = prompt_files / "coop-on-target.safetensors"
    rc, lines, err = train(on_target, "--output", f"shapes={tmp_path}/t.json")
    assert_one_sentence(
        rc, lines, err, r"was trained on the target task 'shapes' itself: that is the baseline cell, not a transfer\."
    )
    rc, lines, err = run_mvlpt(
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--source",
        "orientation",
        "--epochs",
        "2",
        "--output",
        f"shapes={tmp_path}/s.json",
        *TINY,
    )
    assert_one_sentence(rc, lines, err, r"a source task \('orientation'\) is given but no source prompt")
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "s.json").exists()


def test_training_state_of_another_configuration_is_refused(tmp_path, run_mvlpt, prompt_files):
    state = tmp_path / "state.safetensors"
    state.write_bytes((prompt_files / "state.safetensors").read_bytes())
    out = tmp_path / "r.json"
    rc, lines, err = run_mvlpt(
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--shots",
        "3",
        "--epochs",
        "2",
        "--state",
        state,
        "--output",
        f"shapes={out}",
        *TINY,
    )
    assert_one_sentence(
        rc,
        lines,
        err,
        rf"the saved training state {re.escape(str(state))} belongs to another configuration; "
        r"delete it to start over\.",
    )
    assert not out.exists() and state.exists()  # not deleted behind the user's back


# --------------------------------------------------------------------------------------------------
# Result files and tables
# --------------------------------------------------------------------------------------------------
def _result(**kw):
    r = {
        "format": 1,
        "method": "coop",
        "source": "shapes",
        "target": "shapes",
        "mode": "single",
        "seed": 1,
        "shots": 5,
        "metric": "accuracy",
        "test": 0.5,
        "val": 0.5,
        "best_epoch": 1,
        "epochs": 2,
        "wall_time_s": 1.0,
        "device": "cpu",
        "model": "mvlpt-tiny",
        "pretrained": "synthetic",
        "mvlpt_version": "0",
        "config_hash": "0" * 16,
        "n_train": 24,
        "n_val": 6,
        "n_test": 144,
    }
    r.update(kw)
    return r


@pytest.mark.parametrize(
    "content,needle",
    [
        (
            json.dumps({"format": 0, "method": "coop", "acc": 0.5}),
            r"has format 0, this mvlpt reads format 1 .*; delete it and rerun its training job",
        ),
        (
            json.dumps({"method": "coop", "test": 0.5}),
            r"is not an mvlpt result \(no 'format' field\); delete it and rerun its training job\.",
        ),
        (
            json.dumps({k: v for k, v in _result().items() if k != "test"}),
            r"lacks the field\(s\) test; delete it and rerun its training job\.",
        ),
        (json.dumps(_result())[:40], r"cannot be read \(.*\); delete it and rerun its training job\."),
        ("[1, 2]", r"is not an mvlpt result \(no 'format' field\)"),
    ],
    ids=[
        "results file of an older format",
        "results file without a format",
        "results file lacking a field",
        "truncated results file",
        "results file that is a list",
    ],
)
def test_collect_refuses_a_bad_results_file_and_writes_no_table(tmp_path, run_mvlpt, content, needle):
    results = tmp_path / "results"
    (results / "coop" / "shapes__shapes").mkdir(parents=True)
    (results / "coop" / "shapes__shapes" / "seed1.json").write_text(content)
    rc, lines, err = run_mvlpt("collect", "--results-dir", results, "--out-dir", results / "tables")
    assert_one_sentence(rc, lines, err, r"result file \S+seed1\.json " + needle)
    assert not (results / "tables").exists()


def test_damaged_table_is_named(tmp_path, run_mvlpt):
    pairs = tmp_path / "pairs.parquet"
    pairs.write_bytes(b"PAR1 cut short")
    rc, lines, err = run_mvlpt("correlate", "--pairs", pairs, "--similarity", pairs, "--out", tmp_path / "c.csv")
    assert_one_sentence(
        rc, lines, err, rf"table {re.escape(str(pairs))} cannot be read \(.+\); delete it and rerun the step that makes it\."
    )
    assert not (tmp_path / "c.csv").exists()


# --------------------------------------------------------------------------------------------------
# Writing: read-only results directory, full disk
# --------------------------------------------------------------------------------------------------
def _read_only(monkeypatch, folder):
    """A read-only folder: by permission bits where they bind (not for root), else by the OS error they cause."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_read_only_results_directory(tmp_path, monkeypatch, run_mvlpt):
    results = tmp_path / "results"
    _read_only(monkeypatch, results)
    try:
        rc, lines, err = run_mvlpt("split", "--task", "shapes", "--seed", "1", "--shots", "3", "--out", results / "s.json")
        assert_one_sentence(
            rc, lines, err, rf"cannot write {re.escape(str(results))}/s\.json: (Read-only file system|Permission denied)\."
        )
        out = results / "coop" / "shapes__shapes" / "seed1.json"
        rc, lines, err = run_mvlpt(
            "train", "--method", "coop", "--task", "shapes", "--shots", "3", "--epochs", "2", "--output", f"shapes={out}", *TINY
        )
        assert_one_sentence(rc, lines, err, r"cannot write \S+seed1\.json: (Read-only file system|Permission denied)\.")
        assert files_under(results) == []
    finally:
        results.chmod(0o755)


def test_full_disk_while_writing_leaves_no_file(tmp_path, monkeypatch, run_mvlpt):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    rc, lines, err = run_mvlpt("split", "--task", "shapes", "--seed", "1", "--shots", "3", "--out", tmp_path / "s.json")
    assert_one_sentence(rc, lines, err, r"cannot write \S+s\.json: No space left on device\.")
    out, prompt = tmp_path / "r.json", tmp_path / "p.safetensors"
    rc, lines, err = run_mvlpt(
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--shots",
        "3",
        "--epochs",
        "2",
        "--output",
        f"shapes={out}",
        "--save-prompt",
        f"shapes={prompt}",
        *TINY,
    )
    assert_one_sentence(rc, lines, err, r"cannot write \S+p\.safetensors: No space left on device\.")
    assert files_under(tmp_path) == [], "no result, prompt or temp file"


def _no_training(monkeypatch):
    """Make any start of training fail loudly: the checks below must come before it."""
    import mvlpt.training.train

    def refuse(*a, **k):
        raise AssertionError("training started although an output cannot be written")

    monkeypatch.setattr(mvlpt.training.train.Trainer, "__init__", refuse)


@pytest.mark.parametrize("bad", ["output is a folder", "parent is a file", "same file twice"])
def test_unwritable_output_stops_before_training(tmp_path, monkeypatch, run_mvlpt, bad):
    """Every output is checked before the work; none of the run's files appears (the prompt included)."""
    prompt = tmp_path / "p.safetensors"
    if bad == "output is a folder":
        out = tmp_path / "res"
        out.mkdir()
        needle = rf"cannot write {re.escape(str(out))}: it is a folder; give a file name\."
    elif bad == "parent is a file":
        (tmp_path / "res").write_text("a file where a folder should be")
        out = tmp_path / "res" / "shapes__shapes" / "seed1.json"
        needle = rf"cannot write {re.escape(str(out))}: {re.escape(str(tmp_path / 'res'))} is a file, not a folder\."
    else:
        out = prompt
        needle = rf"{re.escape(str(prompt))} is given as the output of two different things; give each its own file\."
    _no_training(monkeypatch)
    before = files_under(tmp_path)
    rc, lines, err = run_mvlpt(
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--shots",
        "3",
        "--epochs",
        "2",
        "--save-prompt",
        f"shapes={prompt}",
        "--output",
        f"shapes={out}",
        *TINY,
    )
    assert_one_sentence(rc, lines, err, needle)
    assert files_under(tmp_path) == before


def test_corrupt_test_image_leaves_no_prompt(tmp_path, monkeypatch, run_mvlpt):
    """Prompts and results are written together after the evaluation: a failing evaluation leaves neither."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    train = []
    for i in range(8):
        train.append(good / f"{i}.png")
        train[-1].write_bytes(_png(i))
    (bad / "0.png").write_bytes(b"not an image at all")
    splits = {"train": FileSplit(train, [0, 1] * 4), "test": FileSplit([bad / "0.png", train[0]], [0, 1])}
    register_toy(monkeypatch, "toy-bad-test", lambda s, d=None: splits[s])
    out, prompt = tmp_path / "res" / "r.json", tmp_path / "res" / "p.safetensors"
    rc, lines, err = run_mvlpt(
        "train",
        "--method",
        "vpt",
        "--task",
        "toy-bad-test",
        "--shots",
        "2",
        "--epochs",
        "1",
        "--train-options",
        '{"warmup_epochs": 0}',
        "--save-prompt",
        f"toy-bad-test={prompt}",
        "--output",
        f"toy-bad-test={out}",
        *TINY,
    )
    assert_one_sentence(rc, lines, err, rf"corrupt image {re.escape(str(bad))}/0\.png")
    assert files_under(tmp_path / "res") == [], "no prompt, no result, no temporary file"


@pytest.mark.parametrize("verb", ["train", "split", "data check", "data fetch"])
def test_data_folder_that_is_a_file_is_named(tmp_path, run_mvlpt, verb):
    data = tmp_path / "data"
    data.write_text("not a folder")
    args = {
        "train": ["train", "--method", "coop", "--task", "shapes", "--output", f"shapes={tmp_path}/r.json", *TINY],
        "split": ["split", "--task", "shapes", "--seed", "1", "--shots", "3", "--out", tmp_path / "s.json"],
        "data check": ["data", "check", "cifar-10"],
        "data fetch": ["data", "fetch", "cifar-10", "--route", "local"],
    }[verb]
    rc, lines, err = run_mvlpt(*args, "--data-dir", data)
    assert_one_sentence(rc, lines, err, rf"the data folder {re.escape(str(data))} is a file, not a folder\.")
    assert files_under(tmp_path) == ["data"]


# --------------------------------------------------------------------------------------------------
# Safe artefacts: a planted pickle is refused, never unpickled
# --------------------------------------------------------------------------------------------------
class Payload:
    """Unpickling this creates the folder ``marker``: the proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def plant(path, kind, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"ctx": Payload(marker)}))
    else:  # torch.save: a zip archive with a pickle inside
        torch.save({"ctx": torch.zeros(4, 8), "evil": Payload(marker)}, path)


def test_the_planted_payload_is_live(tmp_path):
    """Sanity check of the payload itself: unpickling it does run code."""
    for kind in ("pickle", "torch"):
        marker = tmp_path / f"loaded-{kind}"
        plant(tmp_path / f"x.{kind}", kind, marker)
        if kind == "pickle":
            pickle.loads((tmp_path / f"x.{kind}").read_bytes())
        else:
            torch.load(tmp_path / f"x.{kind}", weights_only=False)
        assert marker.is_dir()


@pytest.mark.parametrize("kind", ["pickle", "torch"])
@pytest.mark.parametrize("role", ["init-from", "state"])
def test_planted_pickle_is_refused_without_unpickling(tmp_path, run_mvlpt, kind, role):
    marker = tmp_path / "unpickled"
    results = tmp_path / "results"
    if role == "init-from":  # a source prompt in the results folder, as the sequential mode reads it
        planted = results / "prompts" / "coop" / "orientation" / "seed1.safetensors"
        extra, what = ["--init-from", planted, "--source", "orientation"], "prompt checkpoint"
    else:  # a resumable training state, named as the workflow names them
        planted = tmp_path / "cache" / "state" / "coop" / "shapes__shapes" / "seeds1.0123456789.state.safetensors"
        extra, what = ["--state", planted], "training state"
    plant(planted, kind, marker)
    out = results / "coop" / "shapes__shapes" / "seed1.json"
    rc, lines, err = run_mvlpt(
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--shots",
        "3",
        "--epochs",
        "2",
        *extra,
        "--output",
        f"shapes={out}",
        *TINY,
    )
    assert_one_sentence(
        rc,
        lines,
        err,
        rf"{what} {re.escape(str(planted))} is not a readable safetensors file \(.*\); "
        r"mvlpt never loads pickles\.",
    )
    assert not marker.exists(), "the pickle was unpickled"
    assert not out.exists()


def test_planted_pickle_in_caches_is_never_loaded(tmp_path, run_mvlpt, tiny_clip):
    """A frozen-feature cache file that is a pickle is recomputed; an embedding file that is one is refused."""
    from mvlpt.models.clip import load_clip
    from mvlpt.training.features import cache_path

    marker = tmp_path / "unpickled"
    clip = load_clip("mvlpt-tiny", "synthetic", device="cpu")
    for name in ("test", "shots3_seed1_train", "shots3_seed1_val"):
        plant(cache_path(tmp_path / "cache", clip, "shapes", name), "pickle", marker)
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "train",
                "--method",
                "coop",
                "--task",
                "shapes",
                "--shots",
                "3",
                "--epochs",
                "2",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--output",
                f"shapes={out}",
                *TINY,
            ]
        )
        == 0
    )
    assert out.exists() and not marker.exists()

    emb = tmp_path / "shapes.images.npz"
    plant(emb, "pickle", marker)
    rc, lines, err = run_mvlpt("similarity", "--measure", "visual_cosine", "--embeddings", emb, emb, "--out", tmp_path / "s.csv")
    assert_one_sentence(
        rc, lines, err, rf"embedding file {re.escape(str(emb))} cannot be read \(.*\); delete it and rerun `mvlpt embed`\."
    )
    assert not marker.exists() and not (tmp_path / "s.csv").exists()


def test_no_pickle_loader_in_the_package():
    """Static guard: mvlpt reads artefacts with safetensors, JSON, CSV, parquet and np.load(allow_pickle=False) only."""
    pattern = re.compile(
        r"torch\.load\(|torch\.jit\.load\(|pickle\.loads?\(|Unpickler|read_pickle\(|joblib\.load|"
        r"dill\.load|cloudpickle|allow_pickle\s*=\s*True"
    )

    def bad(line):
        return pattern.search(line) or (re.search(r"np\.load\(", line) and "allow_pickle=False" not in line)

    hits = [
        f"{p.relative_to(REPO)}:{i}: {line.strip()}"
        for p in sorted((REPO / "mvlpt").rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if bad(line)
    ]
    assert hits == []

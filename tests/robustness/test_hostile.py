"""Hostile inputs, second round (issue 24), classes 1, 2, 6 and 7: each is closed by a rule, and each
test tries members of the class the first round did not. Property tests of the same readers and
writers: tests/robustness/test_readers_property.py. docs/reliability.md states the rules."""

import json
import os
import re
import socket
import stat
import types
from pathlib import Path

import pytest
import torch

from fakes import one_sentence, write_record
from mvlpt import io
from mvlpt.errors import MvlptError
from mvlpt.study.names import check_name, check_seed
from mvlpt.tasks import get_task
from mvlpt.tasks.fewshot import read_split, write_split
from mvlpt.training.checkpoints import load_state, read_prompt_meta, save_prompt, save_state
from mvlpt.training.config import RunSpec

REPO = Path(__file__).resolve().parents[2]
TINY = ["--pretrained", "synthetic", "--device", "cpu"]


def train(run_mvlpt, *args):
    return run_mvlpt("train", "--method", "coop", "--task", "shapes", "--shots", "3", "--epochs", "2", *TINY, *args)


# --------------------------------------------------------------------------------------------------
# 1. Every path a run writes is a distinct file, and a path that is not a regular file is never replaced
# --------------------------------------------------------------------------------------------------
def test_state_and_output_that_are_one_file_are_refused(tmp_path, run_mvlpt):
    x = tmp_path / "x.json"
    one_sentence(train(run_mvlpt, "--state", x, "--output", f"shapes={x}"), r"given as the output of two different things")
    one_sentence(
        train(run_mvlpt, "--state", x, "--save-prompt", f"shapes={tmp_path}/./x.json"),
        r"given as the output of two different things",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("link", ["symlink", "hardlink", "dotdot"])
def test_two_spellings_of_one_file_are_one_file(tmp_path, link):
    (tmp_path / "d").mkdir()
    real = tmp_path / "r.json"
    real.write_text("{}")
    other = {"symlink": tmp_path / "s.json", "hardlink": tmp_path / "h.json", "dotdot": tmp_path / "d" / ".." / "r.json"}[link]
    if link == "symlink":
        other.symlink_to(real)
    elif link == "hardlink":
        os.link(real, other)
    spec = RunSpec(method="coop", tasks=["shapes"], outputs={"shapes": str(real)}, save_prompts={"shapes": str(other)})
    with pytest.raises(MvlptError, match=r"given as the output of two different things"):
        spec.check_paths()
    # a new file under a symlinked folder is the same new file
    (tmp_path / "alias").symlink_to(tmp_path / "d")
    spec = RunSpec(
        method="coop",
        tasks=["shapes"],
        outputs={"shapes": str(tmp_path / "d" / "n.json")},
        state_path=str(tmp_path / "alias" / "n.json"),
    )
    with pytest.raises(MvlptError, match=r"given as the output of two different things"):
        spec.check_paths()
    assert real.read_text() == "{}"


def test_an_output_that_is_an_input_is_refused(tmp_path, run_mvlpt):
    split = tmp_path / "split.json"
    split.write_text("{}")
    one_sentence(
        train(run_mvlpt, "--split", f"shapes={split}", "--output", f"shapes={tmp_path}/x/../split.json"),
        r"is both read and written by this command",
    )
    assert split.read_text() == "{}"


def _fifo(tmp_path, name="pipe"):
    p = tmp_path / name
    os.mkfifo(p)
    return p


def _socket(tmp_path):
    p = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    return p, s


@pytest.mark.parametrize("flag", ["--output", "--save-prompt", "--state"])
def test_a_fifo_or_a_link_to_one_is_never_replaced(tmp_path, run_mvlpt, flag):
    fifo = _fifo(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(fifo)
    for target in (fifo, link):
        value = str(target) if flag == "--state" else f"shapes={target}"
        extra = ["--output", f"shapes={tmp_path}/r.json"] if flag == "--state" else []
        one_sentence(train(run_mvlpt, flag, value, *extra), r"it is a FIFO, not a regular file, and mvlpt never replaces one")
        assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "pipe"]


def test_the_atomic_writer_refuses_every_non_regular_destination(tmp_path):
    fifo = _fifo(tmp_path)
    sock, s = _socket(tmp_path)
    folder = tmp_path / "folder"
    folder.mkdir()
    try:
        for dest, kind in ((fifo, "a FIFO"), (sock, "a socket"), (folder, "a folder")):
            with pytest.raises(MvlptError, match=re.escape(kind)):
                io.write_json({"a": 1}, dest)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISSOCK(os.stat(sock).st_mode) and folder.is_dir()
    finally:
        s.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "pipe", "sock"]  # no .tmp left


def test_a_destination_that_turns_into_a_fifo_while_written_is_not_replaced(tmp_path):
    ok, dest = tmp_path / "ok.json", tmp_path / "dest.json"
    with pytest.raises(MvlptError, match=r"a FIFO"):
        with io.write_together():
            io.write_json({"a": 1}, ok)
            io.write_json({"b": 2}, dest)
            os.mkfifo(dest)
    assert stat.S_ISFIFO(os.stat(dest).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest.json"]  # all or none: ok.json is not there either


def test_a_device_is_classified_and_refused(tmp_path, monkeypatch):
    """A character device (e.g. /dev/null) is refused like a FIFO: mvlpt never renames over it (as root
    that would replace the device for the whole machine). Shown on a fake stat, no device is touched."""
    dev = tmp_path / "null"
    real_stat = os.stat

    def fake_stat(p, *a, **k):
        if str(p) == str(dev):
            return os.stat_result((stat.S_IFCHR | 0o666, 0, 0, 1, 0, 0, 0, 0, 0, 0))
        return real_stat(p, *a, **k)

    monkeypatch.setattr(os, "stat", fake_stat)
    with pytest.raises(MvlptError, match=r"it is a device, not a regular file, and mvlpt never replaces one"):
        io.check_destination(dev)


def test_a_file_name_over_the_limit_is_one_sentence(tmp_path, run_mvlpt):
    long = "r" * 250 + ".json"
    one_sentence(
        train(run_mvlpt, "--output", f"shapes={tmp_path / long}"), r"its file name is 255 bytes long.*give a shorter name"
    )
    with pytest.raises(MvlptError, match=r"give a shorter name"):
        io.write_json({}, tmp_path / ("é" * 200))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# 2. A record is checked against itself and against what it is compared with
# --------------------------------------------------------------------------------------------------
SPLIT = {"format": 1, "task": "shapes", "seed": 1, "shots": 3, "n_classes": 4, "train": ["a", "b", "c"], "val": ["d"]}


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"val": ["a"]}, r"1 ids in both train and val \(e\.g\. 'a'\), so the run would validate on training images"),
        ({"train": ["a", "b", "a"]}, r"lists the train id 'a' twice"),
        ({"val": ["d", "d"]}, r"lists the val id 'd' twice"),
        ({"train": []}, r"has no training ids"),
        ({"train": ["a", 3]}, r"train ids that are not a list of texts"),
        ({"seed": -1}, r"has seed -1"),
        ({"seed": 2**40}, r"has seed 1099511627776"),
        ({"seed": "1"}, r"has seed '1'"),
        ({"shots": 0}, r"has shots 0"),
    ],
    ids=[
        "val overlaps train",
        "duplicate train id",
        "duplicate val id",
        "no train",
        "id not text",
        "negative seed",
        "huge seed",
        "seed as text",
        "zero shots",
    ],
)
def test_a_split_that_disagrees_with_itself(tmp_path, change, needle):
    path = tmp_path / "split.json"
    write_split({**SPLIT, **change}, path)
    with pytest.raises(MvlptError, match=needle + r".*recreate it with `mvlpt split`\.$"):
        read_split(path, "shapes")


def test_a_split_whose_seed_was_edited_is_refused_by_the_run(tmp_path, run_mvlpt):
    rc, _, err = run_mvlpt("split", "--task", "shapes", "--seed", "1", "--shots", "3", "--out", tmp_path / "s.json")
    assert rc == 0, err
    split = json.loads((tmp_path / "s.json").read_text())
    split["seed"] = 2
    (tmp_path / "s.json").write_text(json.dumps(split))
    one_sentence(
        train(run_mvlpt, "--split", f"shapes={tmp_path}/s.json", "--output", f"shapes={tmp_path}/r.json"),
        r"was sampled with seed 2, this run's seed is 1",
    )
    assert not (tmp_path / "r.json").exists()


def _prompt(tiny_clip, path, **prov):
    from mvlpt.models.prompts import build_prompt_learner

    base = {
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
    learner = build_prompt_learner(
        "coop", tiny_clip, get_task("shapes").classnames, {}, generator=torch.Generator().manual_seed(0)
    )
    save_prompt(learner, path, {**base, **prov})
    return learner


def _edit_metadata(path, **changes):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata())
    tensors = load_file(str(path))
    meta.update(changes)
    save_file(tensors, str(path), metadata=meta)


def test_a_prompt_whose_provenance_was_edited_is_refused(tmp_path, tiny_clip):
    path = tmp_path / "p.safetensors"
    _prompt(tiny_clip, path)
    meta, prov = read_prompt_meta(path)
    _edit_metadata(path, provenance=json.dumps({**prov, "seed": 2}, sort_keys=True))
    with pytest.raises(MvlptError, match=r"is damaged: its provenance was edited after the file was written"):
        read_prompt_meta(path)


def test_a_gain_pairs_only_runs_of_one_split(tmp_path, run_mvlpt):
    from mvlpt.analysis import tables

    root = tmp_path / "results"
    write_record(root, "coop", "a", "a", 1, 0.5, splits={"a": "1" * 64})
    write_record(root, "coop", "b", "b", 1, 0.5, splits={"b": "3" * 64})
    write_record(root, "coop", "b", "a", 1, 0.6, splits={"a": "1" * 64, "b": "3" * 64})
    runs, _ = tables.load_study(root)  # one split of a: fine
    assert len(runs) == 3
    write_record(root, "coop", "b", "a", 1, 0.6, splits={"a": "2" * 64, "b": "3" * 64})
    with pytest.raises(
        MvlptError,
        match=r"coop b->a seed 1 \(\S+\) was trained on another few-shot split of a than its "
        r"baseline \(\S+: split 111111111111, this run: 222222222222\), so their "
        r"difference is no gain",
    ):
        tables.load_study(root)
    one_sentence(run_mvlpt("collect", "--results-dir", root, "--out", tmp_path / "tables"), r"another few-shot split of a")
    assert not (tmp_path / "tables").exists() or not list((tmp_path / "tables").iterdir())


def test_a_record_whose_splits_miss_its_target(tmp_path):
    with pytest.raises(MvlptError, match=r"records the few-shot splits of b but not of its target 'a'"):
        write_record(tmp_path, "coop", "b", "a", 1, 0.6, splits={"b": "3" * 64})


# --------------------------------------------------------------------------------------------------
# 6. One sentence naming the thing and the fix, nothing that looks finished
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", str(2**31), str(2**70)])
def test_seeds_out_of_range(tmp_path, run_mvlpt, seed):
    one_sentence(
        train(run_mvlpt, "--seed", seed, "--output", f"shapes={tmp_path}/r.json"),
        rf"the seed {seed} is not an integer from 0 to 2147483647",
    )
    one_sentence(
        run_mvlpt("split", "--task", "shapes", "--seed", seed, "--shots", "3", "--out", tmp_path / "s.json"),
        rf"the seed {seed} is not an integer from 0 to 2147483647",
    )
    one_sentence(train(run_mvlpt, "--init-seed", seed, "--output", f"shapes={tmp_path}/r.json"), r"the init seed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("lr", ["1e300", "1e39"])
def test_a_huge_learning_rate(tmp_path, run_mvlpt, lr):
    one_sentence(
        train(run_mvlpt, "--lr", lr, "--output", f"shapes={tmp_path}/r.json"),
        r"lr must be at most 1e\+38, what float32 parameters can take",
    )
    assert list(tmp_path.iterdir()) == []


def test_a_folder_as_prompt_or_state(tmp_path, run_mvlpt):
    folder = tmp_path / "folder"
    folder.mkdir()
    one_sentence(
        train(run_mvlpt, "--init-from", folder, "--output", f"shapes={tmp_path}/r.json"),
        r"prompt checkpoint \S+folder is a folder, not a file",
    )
    one_sentence(train(run_mvlpt, "--state", folder, "--output", f"shapes={tmp_path}/r.json"), r"it is a folder")
    with pytest.raises(MvlptError, match=r"training state \S+ is a folder, not a file"):
        load_state(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_corrupt_provenance_is_not_called_an_older_mvlpt(tmp_path, tiny_clip):
    path = tmp_path / "p.safetensors"
    _prompt(tiny_clip, path)
    _edit_metadata(path, provenance="{not json")
    with pytest.raises(MvlptError) as e:
        read_prompt_meta(path)
    assert "is damaged: its provenance is not valid JSON" in str(e.value) and "older" not in str(e.value)
    _edit_metadata(path, provenance=json.dumps({"task": "x"}))
    with pytest.raises(MvlptError, match=r"is damaged: its provenance lacks tasks, seed"):
        read_prompt_meta(path)


def test_a_damaged_state(tmp_path):
    path = tmp_path / "state.safetensors"
    save_state(path, {"1/param/ctx": torch.zeros(2)}, {"next_epoch": 1, "config_hashes": ["0"], "best": {}})
    _edit_metadata(path, meta="{broken")
    with pytest.raises(MvlptError, match=r"training state \S+ is damaged \(its metadata is not what mvlpt writes\); delete it"):
        load_state(path)
    path.write_bytes(path.read_bytes()[:-3])  # tensors cut short
    with pytest.raises(MvlptError):
        load_state(path)


def test_a_full_disk_while_saving_a_prompt(tmp_path, tiny_clip, monkeypatch):
    from safetensors import SafetensorError

    import mvlpt.training.checkpoints as ck

    def full(*a, **k):
        raise SafetensorError("No space left on device (os error 28)")

    monkeypatch.setattr(ck, "save_file", full)
    with pytest.raises(MvlptError, match=r"cannot write \S+p\.safetensors: safetensors could not write it \(No space left"):
        _prompt(tiny_clip, tmp_path / "p.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name,problem",
    [
        ("shapes/../x", "contains a path separator"),
        ("..", "contains '..'"),
        ("a,b", "contains a comma"),
        ("a\nb", "contains a newline"),
        ("a\tb", "contains a newline, tab"),
        (" shapes", "starts or ends with a space"),
        ("x" * 101, "is longer than 100 bytes"),
        ("", "is empty"),
        ("a\\b", "contains a path separator"),
    ],
)
def test_names_follow_one_rule(tmp_path, run_mvlpt, name, problem):
    with pytest.raises(MvlptError, match=re.escape(problem)):
        check_name(name, "task name")
    one_sentence(
        run_mvlpt("train", "--method", "coop", "--task", name, "--output", f"{name}={tmp_path}/r.json", *TINY), re.escape(problem)
    )
    with pytest.raises(MvlptError, match=re.escape(problem)):
        get_task(name)
    assert list(tmp_path.iterdir()) == []


def test_seed_rule():
    assert check_seed(0) == 0 and check_seed(2**31 - 1) == 2**31 - 1
    for bad in (-1, 2**31, True, 1.0, "1", None):
        with pytest.raises(MvlptError, match=r"is not an integer from 0 to 2147483647"):
            check_seed(bad)


# --------------------------------------------------------------------------------------------------
# 7. Lock recovery: a stale record of another host never blocks recovery for good
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def recovery(tmp_path, monkeypatch):
    """workflow/rules/recovery.smk's functions, run in ``tmp_path`` as a workflow folder."""
    ns = {"workflow": types.SimpleNamespace(is_main_process=False), "__name__": "recovery"}
    exec(compile((REPO / "workflow/rules/recovery.smk").read_text(), "recovery.smk", "exec"), ns)
    monkeypatch.chdir(tmp_path)
    return types.SimpleNamespace(**ns)


def _lock(tmp_path):
    (tmp_path / ".snakemake" / "locks").mkdir(parents=True, exist_ok=True)
    (tmp_path / ".snakemake" / "locks" / "0.input.lock").write_text("x")


def _record(r, host, pid=999999, started=1.0, local=True):
    r._write_record({"host": host, "pid": pid, "started": started, "local": local})


def test_a_stale_record_of_another_host(recovery, tmp_path):
    r = recovery
    _record(r, "elsewhere")
    _lock(tmp_path)
    msg = r.recover_from_killed_runs(argv=["snakemake"])
    assert "a Snakemake on host elsewhere (pid 999999), which cannot be checked from here (its record: " in msg
    assert "run `snakemake --unlock` once, which forgets the record" in msg
    assert (tmp_path / ".snakemake/locks").is_dir()  # kept: it may be in use
    # the documented command forgets it ...
    assert "forgot the records of the Snakemake runs in this folder (host elsewhere pid 999999)" in r.recover_from_killed_runs(
        argv=["snakemake", "--unlock"]
    )
    assert not list((tmp_path / ".snakemake/mvlpt-runs").iterdir())
    # ... so the next killed local run is recovered automatically
    _record(r, socket.gethostname(), pid=999999, started=1.0)
    assert r.recover_from_killed_runs(argv=["snakemake"]).startswith("removed the lock left by a killed Snakemake")
    assert not (tmp_path / ".snakemake/locks").exists()


def test_a_record_of_another_host_is_forgotten_when_nothing_holds_the_folder(recovery, tmp_path):
    r = recovery
    _record(r, "elsewhere")
    assert r.recover_from_killed_runs(argv=["snakemake"]) is None  # not locked: nobody holds the folder
    assert not list((tmp_path / ".snakemake/mvlpt-runs").iterdir())
    # a later kill of a local run is then recovered automatically, not blocked by the old record
    _record(r, socket.gethostname())
    _lock(tmp_path)
    assert r.recover_from_killed_runs(argv=["snakemake"]).startswith("removed the lock left by a killed Snakemake")


def test_a_missing_weights_file_is_not_called_an_unknown_tag(tmp_path, run_mvlpt):
    for weights, needle in (
        (tmp_path / "vit.pt", r"the weights file \S+vit\.pt does not exist; give the path of an existing file"),
        ("weights.safetensors", r"the weights file weights\.safetensors does not exist"),
        (tmp_path, r"are a folder; give the weights file in it"),
    ):
        msg = one_sentence(
            run_mvlpt(
                "train",
                "--method",
                "coop",
                "--task",
                "shapes",
                "--model",
                "ViT-B-16",
                "--pretrained",
                weights,
                "--device",
                "cpu",
                "--output",
                f"shapes={tmp_path}/r.json",
            ),
            needle,
        )
        assert "tag" not in msg.split(";")[0]
    assert list(tmp_path.iterdir()) == []


def test_a_failed_collect_leaves_no_table(tmp_path, run_mvlpt, monkeypatch):
    from mvlpt.analysis import tables

    root = tmp_path / "results"
    for s, t in (("a", "a"), ("b", "b"), ("a", "b"), ("b", "a")):
        write_record(root, "coop", s, t, 1, 0.5)
    real, calls = tables.write_table, []

    def full_disk_at_the_third(df, path, **kw):
        calls.append(path)
        if len(calls) == 3:
            raise MvlptError(f"cannot write {path}.csv: No space left on device.")
        return real(df, path, **kw)

    monkeypatch.setattr(tables, "write_table", full_disk_at_the_third)
    out = tmp_path / "tables"
    one_sentence(run_mvlpt("collect", "--results-dir", root, "--out", out), r"No space left on device")
    assert len(calls) == 3 and not [p for p in out.rglob("*") if p.is_file()]  # no runs.csv that looks finished


def test_one_task_given_two_files(tmp_path, run_mvlpt):
    one_sentence(
        train(run_mvlpt, "--output", f"shapes={tmp_path}/a.json", "--output", f"shapes={tmp_path}/b.json"),
        r"--output is given twice for task 'shapes' \(\S+a\.json and \S+b\.json\); give one file per task\.",
    )
    assert list(tmp_path.iterdir()) == []

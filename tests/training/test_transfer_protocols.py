"""The transfer protocols of issue 25: the zero-epoch measure and the joint batch composition."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import fakes
from mvlpt.cli import main
from mvlpt.errors import MvlptError
from mvlpt.training.config import TrainConfig
from mvlpt.training.train import Trainer, run
from mvlpt.training.zero_epoch import ZeroEpochSpec, run as zero_epoch

A, B = "shape-colours", "shapes"


def spec(tmp_path, method="coop", tasks=(A,), **kw):
    kw.setdefault("train", TrainConfig(epochs=2, lr=0.01, warmup_epochs=0, batch_size=4, batch_size_multitask=8))
    return fakes.spec(tmp_path, method, tasks, **kw)


@pytest.fixture(scope="module")
def source_prompt(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    prompt = d / "src{seed}.safetensors"
    run(spec(d, "coop", (A,), seeds=[1, 2], save_prompts={A: str(prompt)}, outputs={}))
    return str(prompt)


def test_zero_epoch_evaluates_the_source_prompt_untrained(tmp_path, source_prompt):
    s = spec(tmp_path, "coop", (B,), seeds=[1, 2], init_from=source_prompt, outputs={B: str(tmp_path / "r{seed}.json")})
    results = zero_epoch(s)
    assert [r["mode"] for r in results] == ["zero_epoch"] * 2 and {r["source"] for r in results} == {A}
    assert all(r["best_epoch"] == 0 and r["target"] == B and r["test_bootstrap"]["n"] > 0 for r in results)
    # the same number as the source prompt loaded into a target learner and tested by hand
    t = Trainer(spec(tmp_path / "x", "coop", (B,), seeds=[1, 2], init_from=source_prompt, outputs={}))
    values, _ = t.test(0)
    assert [r["test"] for r in results] == pytest.approx(values, abs=1e-6)
    assert torch.equal(t.members[0].learner.ctx.detach().cpu(), load_file(source_prompt.format(seed=1))["ctx"])
    # recorded apart from a sequential run of the same pair
    seq = spec(tmp_path / "s", "coop", (B,), seeds=[1, 2], init_from=source_prompt)
    assert ZeroEpochSpec.of(seq).config_hash(1) != seq.config_hash(1)
    assert ZeroEpochSpec.of(seq).setting_hash() == seq.setting_hash()  # compared with the same baseline


def test_zero_epoch_needs_a_source_prompt_and_saves_nothing(tmp_path, source_prompt):
    with pytest.raises(MvlptError, match="needs the source's prompt"):
        ZeroEpochSpec.of(spec(tmp_path, "coop", (B,))).validate()
    with pytest.raises(MvlptError, match="trains nothing"):
        ZeroEpochSpec.of(
            spec(tmp_path, "coop", (B,), init_from=source_prompt.format(seed=1), save_prompts={B: str(tmp_path / "p")})
        ).validate()


def test_zero_epoch_on_the_command_line(tmp_path, source_prompt, capsys):
    out = tmp_path / "r{seed}.json"
    rc = main(
        [
            "train",
            "--zero-epoch",
            "--method",
            "coop",
            "--task",
            B,
            "--seed",
            "1",
            "--shots",
            "5",
            "--init-from",
            source_prompt,
            "--output",
            f"{B}={out}",
            "--pretrained",
            "synthetic",
            "--device",
            "cpu",
            "--train-options",
            json.dumps({"epochs": 2, "lr": 0.01, "warmup_epochs": 0, "batch_size": 4, "batch_size_multitask": 8}),
        ]
    )
    assert rc == 0
    rec = json.loads((tmp_path / "r1.json").read_text())
    assert rec["mode"] == "zero_epoch" and rec["source"] == A and rec["best_epoch"] == 0


@pytest.fixture(scope="module")
def both_prompts(tmp_path_factory):
    """Baseline prompts of A and B, laid out as a study's: {task}/seed{seed}.safetensors."""
    d = tmp_path_factory.mktemp("both")
    for t in (A, B):
        run(spec(d, "coop", (t,), seeds=[1, 2], save_prompts={t: str(d / t / "seed{seed}.safetensors")}, outputs={}))
    return d


def test_zero_epoch_of_every_cell_in_one_process_equals_one_job_per_cell(tmp_path, both_prompts):
    """The zero_epoch mode's one job per method (workflow/rules/zero_epoch.smk): every (source, target) cell of
    the given tasks, each result the number a one-cell run gives."""
    opts = json.dumps({"epochs": 2, "lr": 0.01, "warmup_epochs": 0, "batch_size": 4, "batch_size_multitask": 8})
    common = ["--method", "coop", "--seed", "1", "--seed", "2", "--shots", "5", "--pretrained", "synthetic"]
    common += ["--device", "cpu", "--train-options", opts]
    init = str(both_prompts / "{source}" / "seed{seed}.safetensors")
    outs = [f"{t}={tmp_path / 'all' / ('{source}__' + t)}" + "_{seed}.json" for t in (A, B)]
    argv = ["train", "--zero-epoch", "--task", A, "--task", B, "--source", A, "--source", B, "--init-from", init]
    assert main(argv + [a for o in outs for a in ("--output", o)] + common) == 0
    written = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert written == sorted(f"{s}__{t}_{k}.json" for s, t in ((A, B), (B, A)) for k in (1, 2))
    for s, t in ((A, B), (B, A)):
        one = tmp_path / "one" / f"{s}__{t}" / "r{seed}.json"
        argv = ["train", "--zero-epoch", "--task", t, "--init-from", init.replace("{source}", s), "--output", f"{t}={one}"]
        assert main(argv + common) == 0
        for k in (1, 2):
            a = json.loads((tmp_path / "all" / f"{s}__{t}_{k}.json").read_text())
            b = json.loads((one.parent / f"r{k}.json").read_text())
            assert (a["source"], a["target"], a["mode"]) == (s, t, "zero_epoch")
            assert a["test"] == b["test"] and a["val"] == b["val"] and a["config_hash"] == b["config_hash"]


def test_zero_epoch_of_several_cells_needs_source_slots(tmp_path, both_prompts, capsys):
    init = str(both_prompts / A / "seed{seed}.safetensors")
    argv = ["train", "--zero-epoch", "--method", "coop", "--task", B, "--source", A, "--source", B, "--init-from", init]
    argv += ["--output", f"{B}={tmp_path / 'r{seed}.json'}", "--pretrained", "synthetic", "--device", "cpu"]
    assert main(argv) != 0
    assert "need a {source} slot in --init-from" in capsys.readouterr().err
    assert main([a for a in argv if a != "--zero-epoch"]) != 0
    assert "several only with --zero-epoch" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_joint_batch_default_leaves_hashes_unchanged_and_added_is_hashed():
    shared, added = TrainConfig(), TrainConfig(joint_batch="added")
    assert "joint_batch" not in shared.hashable() and added.hashable()["joint_batch"] == "added"
    with pytest.raises(MvlptError, match="joint_batch must be shared or added"):
        TrainConfig(joint_batch="mixed").validate()


def test_added_batches_hold_each_tasks_own_batch(tmp_path):
    t = Trainer(
        spec(
            tmp_path,
            "coop",
            (A, B),
            seeds=[1, 2],
            train=TrainConfig(epochs=1, lr=0.01, warmup_epochs=0, batch_size=4, batch_size_multitask=8, joint_batch="added"),
            outputs={},
        )
    )
    plan = t.epoch_plan(0)
    n = [len(td.train_idx) for td in t.members[0].data]
    assert len(plan) == max(-(-k // 4) for k in n)  # the larger task's baseline steps
    for step in plan:
        for _member, parts in step:
            assert [td.task.name for td, _ in parts] == [A, B]
            assert all(len(sel) == 4 for _, sel in parts)
    # over the epoch every image of each task is seen (a smaller task starts a new pass)
    for k, size in enumerate(n):
        seen = np.concatenate([step[0][1][k][1].cpu().numpy() for step in plan])
        assert set(seen) == set(range(size))
    # the loss is the sum of each task's mean: a step's loss is larger than the shared mean of its images
    loss = t.train_step(plan[0])
    assert loss.shape == (2,) and torch.isfinite(loss).all()


def test_added_differs_from_shared_and_is_deterministic(tmp_path):
    def one(composition, where):
        s = spec(
            tmp_path / where,
            "coop",
            (A, B),
            train=TrainConfig(epochs=2, lr=0.01, warmup_epochs=0, batch_size=4, batch_size_multitask=8, joint_batch=composition),
        )
        return {r["target"]: r["test"] for r in run(s)}, s.config_hash(1)

    (a1, h1), (a2, _), (s1, hs) = one("added", "a1"), one("added", "a2"), one("shared", "s1")
    assert a1 == a2 and h1 != hs
    assert a1 != s1

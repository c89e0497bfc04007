"""The transfer protocols of issue 25: the zero-epoch measure and the joint batch composition."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mvlpt.cli import main
from mvlpt.errors import MvlptError
from mvlpt.training.config import RunSpec, TrainConfig
from mvlpt.training.train import Trainer, run
from mvlpt.training.zero_epoch import ZeroEpochSpec, run as zero_epoch

A, B = "shape-colours", "shapes"


def spec(tmp_path, method="coop", tasks=(A,), **kw):
    train = kw.pop("train", TrainConfig(epochs=2, lr=0.01, warmup_epochs=0, batch_size=4, batch_size_multitask=8))
    outputs = kw.pop("outputs", {t: str(tmp_path / f"{t}.json") for t in tasks})
    return RunSpec(
        method=method,
        tasks=list(tasks),
        seeds=kw.pop("seeds", [1]),
        shots=5,
        train=train,
        outputs=outputs,
        pretrained="synthetic",
        **kw,
    )


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

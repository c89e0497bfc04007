"""Multitask training: a source group's prompt (best mean validation metric over the group), the target
started from it, and a group trained jointly whose one run serves every member (issue 16)."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fakes import kill_training_at
from mvlpt.errors import MvlptError
from mvlpt.training.checkpoints import load_prompt
from mvlpt.training.config import RunSpec, TrainConfig
from mvlpt.training.train import Trainer, run

A, B, C = "shape-colours", "shapes", "glyph-digits"


def spec(tmp_path, tasks, method="coop", **kw):
    kw.setdefault("train", TrainConfig(epochs=4, lr=0.01, checkpoint_every=2))
    kw.setdefault("outputs", {})
    kw.setdefault("pretrained", "synthetic")
    return RunSpec(method=method, tasks=list(tasks), seeds=kw.pop("seeds", [1]), shots=5, **kw)


def provenance(path):
    with safe_open(str(path), "pt") as fh:
        return json.loads(fh.metadata()["provenance"])


def same_tensors(p, q):
    a, b = load_file(p), load_file(q)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", ["coop", pytest.param("vpt", marks=pytest.mark.slow)])  # the fast lane: CoOp
def test_a_group_of_one_task_is_the_single_task_run(tmp_path, method):
    single, group = tmp_path / "single.safetensors", tmp_path / "group.safetensors"
    run(spec(tmp_path / "s", [A], method, save_prompts={A: str(single)}))
    run(spec(tmp_path / "g", [A], method, save_group_prompt=str(group)))
    assert same_tensors(single, group)
    prov = provenance(group)
    assert prov["selected_by"] == "mean_val" and prov["tasks"] == [A] and prov["task"] == A
    assert prov["best_epoch"] == provenance(single)["best_epoch"]
    # and the target started from either prompt trains the same
    from_single = run(spec(tmp_path / "t1", [B], method, init_from=str(single), outputs={B: str(tmp_path / "t1.json")}))[0]
    from_group = run(spec(tmp_path / "t2", [B], method, init_from=str(group), outputs={B: str(tmp_path / "t2.json")}))[0]
    for key in ("test", "val", "best_epoch", "source", "mode"):
        assert from_single[key] == from_group[key], key


def test_the_group_prompt_is_the_checkpoint_best_on_the_mean_validation_metric(tmp_path, monkeypatch):
    # scripted validation metrics: A peaks at epoch 2, B at epoch 3, their mean first peaks at epoch 2 of 4
    script = {A: [0.1, 0.9, 0.2, 0.3], B: [0.5, 0.0, 0.6, 0.9]}  # means 0.3, 0.45, 0.4, 0.6 -> epoch 4
    script[B][3] = 0.5  # means 0.3, 0.45, 0.4, 0.4 -> epoch 2 (and B's own best: epoch 3)
    snapshots = []

    def scripted_validate(self):
        epoch = len(snapshots)
        snapshots.append({k: v.detach().clone() for k, v in self.members[0].learner.state_dict().items()})
        return [{A: (script[A][epoch], 1.0), B: (script[B][epoch], 1.0)}]  # (metric, loss): no ties to break

    monkeypatch.setattr(Trainer, "validation", scripted_validate)
    group, per_b = tmp_path / "group.safetensors", tmp_path / "b.safetensors"
    run(spec(tmp_path, [A, B], save_group_prompt=str(group), save_prompts={B: str(per_b)}))
    assert provenance(group)["best_epoch"] == 2 and provenance(per_b)["best_epoch"] == 3
    assert provenance(group)["task"] == f"{A}+{B}" and provenance(group)["tasks"] == [A, B]
    saved = load_file(group)
    assert all(torch.equal(saved[k], snapshots[1][k]) for k in saved)
    assert not torch.equal(saved["ctx"], snapshots[2]["ctx"])  # training did move on after epoch 2


def test_a_target_starts_from_a_group_prompt_and_records_the_group(tmp_path):
    group = tmp_path / "group-seed{seed}.safetensors"
    run(spec(tmp_path, [A, B], save_group_prompt=str(group), seeds=[1, 2]))
    out = run(spec(tmp_path, [C], init_from=str(group), seeds=[1, 2], outputs={C: str(tmp_path / "c{seed}.json")}))
    assert {r["source"] for r in out} == {f"{A}+{B}"} and {r["mode"] for r in out} == {"sequential"}
    assert {r["init_prompt"]["task"] for r in out} == {f"{A}+{B}"}
    t = Trainer(spec(tmp_path / "x", [C], init_from=str(group), seeds=[2]))
    assert torch.equal(t.members[0].learner.ctx.detach().cpu(), load_file(tmp_path / "group-seed2.safetensors")["ctx"])
    with pytest.raises(MvlptError, match="trained on the target task"):  # a group that holds the target is no source
        run(spec(tmp_path, [A], init_from=str(group), seeds=[1, 2], outputs={A: str(tmp_path / "a{seed}.json")}))


@pytest.mark.parametrize("method", ["coop", pytest.param("upt", marks=pytest.mark.slow)])  # the fast lane: CoOp
def test_one_joint_group_run_serves_every_member(tmp_path, method):
    everyone = run(
        spec(
            tmp_path / "all",
            [A, B, C],
            method,
            outputs={t: str(tmp_path / f"all-{t}.json") for t in (A, B, C)},
            save_prompts={B: str(tmp_path / "b.safetensors")},
        )
    )
    only_b = run(spec(tmp_path / "b", [A, B, C], method, outputs={B: str(tmp_path / "only-b.json")}))[0]
    served = {r["target"]: r for r in everyone}
    assert set(served) == {A, B, C} and served[B]["source"] == f"{A}+{C}" and served[B]["mode"] == "joint"
    for key in ("test", "val", "best_epoch", "config_hash"):
        assert served[B][key] == only_b[key], key
    # the member's result is its own checkpoint's: B's saved prompt, evaluated on B alone, gives B's test metric
    alone = Trainer(spec(tmp_path / "eval", [B], method))
    load_prompt(alone.members[0].learner, tmp_path / "b.safetensors")
    values, _ = alone.test(0)
    assert values[0] == pytest.approx(served[B]["test"], abs=1e-12)


def test_resuming_needs_a_state_that_tracked_the_group_prompt(tmp_path, monkeypatch):
    state = tmp_path / "state.safetensors"
    kill_training_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(spec(tmp_path, [A, B], state_path=str(state), outputs={A: str(tmp_path / "a.json")}))
    monkeypatch.undo()
    with pytest.raises(MvlptError, match="did not track a group prompt"):
        run(spec(tmp_path, [A, B], state_path=str(state), save_group_prompt=str(tmp_path / "g.safetensors")))

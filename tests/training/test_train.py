"""The training loop: resume equals uninterrupted, joint and sequential modes, errors."""

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file

from fakes import kill_training_at, spec
from mvlpt.errors import MvlptError
from mvlpt.study import vocabulary
from mvlpt.training.config import RunSpec, TrainConfig
from mvlpt.training.train import Trainer, lr_at, run

A, B = "shape-colours", "shapes"


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(epochs=10, lr=0.002, warmup_epochs=1, warmup_lr=1e-5)
    assert lr_at(0, cfg) == 1e-5
    assert lr_at(1, cfg) == pytest.approx(0.002)
    assert lr_at(9, cfg) < lr_at(5, cfg) < lr_at(2, cfg)


@pytest.mark.parametrize("method", ["coop", "vpt", pytest.param("upt", marks=pytest.mark.slow)])
def test_resume_equals_uninterrupted(tmp_path, monkeypatch, method):
    full = run(spec(tmp_path / "full", method, save_prompts={A: str(tmp_path / "full.safetensors")}))[0]

    state = tmp_path / "state.safetensors"
    s = spec(tmp_path / "resumed", method, state_path=str(state), save_prompts={A: str(tmp_path / "res.safetensors")})
    kill_training_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(s)
    assert state.exists() and not (tmp_path / "resumed" / f"{A}.json").exists()
    monkeypatch.undo()
    resumed = run(s)[0]
    assert not state.exists(), "the resume state is removed once the run is complete"
    for key in ("test", "val", "best_epoch"):
        assert resumed[key] == full[key], key
    a, b = load_file(tmp_path / "full.safetensors"), load_file(tmp_path / "res.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_twice_is_identical(tmp_path):
    """Two runs of one spec give the same numbers and hash (that another seed differs is checked, on the saved
    prompts, by test_stacked_seeds_equal_separate_runs)."""
    r1 = run(spec(tmp_path / "1", "vpt", train=TrainConfig(epochs=2, lr=0.01, warmup_epochs=0)))[0]
    r2 = run(spec(tmp_path / "2", "vpt", train=TrainConfig(epochs=2, lr=0.01, warmup_epochs=0)))[0]
    assert (r1["test"], r1["val"], r1["best_epoch"]) == (r2["test"], r2["val"], r2["best_epoch"])
    assert r1["config_hash"] == r2["config_hash"]


def test_joint_run_serves_both_directions(tmp_path):
    results = run(spec(tmp_path, "coop", (A, B)))
    by_target = {r["target"]: r for r in results}
    assert by_target[A]["source"] == B and by_target[B]["source"] == A
    assert {r["mode"] for r in results} == {"joint"}
    for t in (A, B):
        on_disk = json.loads((tmp_path / f"{t}.json").read_text())
        assert on_disk["target"] == t and on_disk["format"] == 1
        assert 0.0 <= on_disk["test"] <= 1.0


def _first_step_by_hand(trainer):
    """The first training step's logits, soft targets and own-task class masks, assembled from the epoch plan as
    Trainer.train_step does, before any update."""
    batch = trainer.epoch_plan(0)[0]
    ((m, parts),) = batch  # one seed: one member
    xs, fs = zip(*(td.inputs("train", sel) for td, sel in parts))
    images, feats = (torch.cat(xs), None) if xs[0] is not None else (None, torch.cat(fs))
    with torch.no_grad():
        logits = trainer._logits([m], [images], [feats])[0].float()
    target = torch.cat([td.train_t[sel] for td, sel in parts])
    mask = torch.cat([td.class_mask.expand(len(sel), -1) for td, sel in parts])
    return batch, logits, target, mask


def test_per_task_head_masks_other_tasks(tmp_path):
    """head: per_task takes each sample's softmax over its own task's classes only. On the same first batch
    from the same initial prompt, the per-task loss is that restricted cross-entropy (by hand) and lower than the
    union head's full-softmax loss; the head is part of the setting (another hash). No epoch is trained."""
    union = Trainer(spec(tmp_path / "u", "coop", (A, B)))
    masked = Trainer(spec(tmp_path / "m", "coop", (A, B), train=TrainConfig(epochs=4, lr=0.01, head="per_task")))
    assert union.spec.setting_hash() != masked.spec.setting_hash()
    batch, logits, target, mask = _first_step_by_hand(masked)
    assert mask.any(1).all() and (~mask).any(1).all()  # every sample has own classes and other tasks' classes
    assert not (target * ~mask).any()  # the soft labels live in the sample's own task
    assert len({td.offset for _, parts in batch for td, _ in parts}) == 2  # the batch has samples of both tasks
    own = torch.stack([-(t[k] * torch.log_softmax(lg[k], -1)).sum() for lg, t, k in zip(logits, target, mask)]).mean()
    full = -(target * torch.log_softmax(logits, -1)).sum(1).mean()
    assert own < full
    assert masked.train_step(batch)[0].item() == pytest.approx(own.item(), rel=1e-5)
    assert union.train_step(union.epoch_plan(0)[0])[0].item() == pytest.approx(full.item(), rel=1e-5)


def test_sequential_mode_initialises_from_source_prompt(tmp_path):
    prompt = tmp_path / "src.safetensors"
    run(spec(tmp_path, "coop", (A,), save_prompts={A: str(prompt)}, outputs={}))
    assert prompt.exists()
    out = run(spec(tmp_path, "coop", (B,), init_from=str(prompt), source=A))[0]
    assert out["mode"] == "sequential" and out["source"] == A and out["target"] == B
    # the init really comes from the file: a zero-epoch-like check on the loaded parameters
    t = Trainer(spec(tmp_path / "x", "coop", (B,), init_from=str(prompt), source=A))
    assert torch.equal(t.members[0].learner.ctx.detach().cpu(), load_file(prompt)["ctx"])


def test_prompt_of_another_method_or_shape_is_refused(tmp_path):
    prompt = tmp_path / "vpt.safetensors"
    run(spec(tmp_path, "vpt", (A,), save_prompts={A: str(prompt)}, outputs={}))
    with pytest.raises(MvlptError, match="is for method 'vpt', not 'coop'"):
        Trainer(spec(tmp_path, "coop", (B,), init_from=str(prompt), source=A))
    with pytest.raises(MvlptError, match="has shape"):
        Trainer(spec(tmp_path, "vpt", (B,), init_from=str(prompt), source=A, method_options={"n_ctx": 3}))


def test_pickle_is_never_loaded(tmp_path):
    evil = tmp_path / "prompt.safetensors"
    evil.write_bytes(pickle.dumps({"ctx": [1, 2, 3]}))
    with pytest.raises(MvlptError, match="never loads pickles"):
        Trainer(spec(tmp_path, "coop", (B,), init_from=str(evil), source=A))


def test_nan_loss_stops_with_a_clear_message_and_no_result(tmp_path):
    s = spec(tmp_path, "coop", (A,), train=TrainConfig(epochs=3, lr=1e30, warmup_epochs=0))
    with pytest.raises(MvlptError, match="training loss became"):
        run(s)
    assert not (tmp_path / f"{A}.json").exists()


def test_bad_training_options_are_clear():
    with pytest.raises(MvlptError, match="unknown training option"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(MvlptError, match="must be a int"):
        TrainConfig.from_dict({"epochs": "ten"})
    with pytest.raises(MvlptError, match="head must be"):
        TrainConfig.from_dict({"head": "both"})


@pytest.mark.parametrize(
    "method,tasks",
    [("coop", (A,)), pytest.param("vpt", (A, B), marks=pytest.mark.slow), pytest.param("upt", (A,), marks=pytest.mark.slow)],
)  # the fast lane: CoOp
def test_stacked_seeds_equal_separate_runs(tmp_path, method, tasks):
    """K prompt sets in one forward pass give the results of K separate runs."""
    seeds = [1, 2, 3]
    outputs = {t: str(tmp_path / "stacked" / f"{t}_{{seed}}.json") for t in tasks}
    prompts = {tasks[0]: str(tmp_path / "stacked" / "p{seed}.safetensors")}
    stacked = run(spec(tmp_path, method, tasks, seeds=seeds, outputs=outputs, save_prompts=prompts))
    assert len(stacked) == len(seeds) * len(tasks)
    for seed in seeds:
        alone_prompt = tmp_path / f"alone{seed}.safetensors"
        alone = run(spec(tmp_path / f"alone{seed}", method, tasks, seeds=[seed], save_prompts={tasks[0]: str(alone_prompt)}))
        for a in alone:
            s = next(r for r in stacked if r["seed"] == seed and r["target"] == a["target"])
            assert (s["test"], s["val"], s["best_epoch"], s["config_hash"]) == pytest.approx(
                (a["test"], a["val"], a["best_epoch"], a["config_hash"]), abs=1e-9
            )
        x, y = load_file(tmp_path / "stacked" / f"p{seed}.safetensors"), load_file(alone_prompt)
        assert all(torch.allclose(x[k], y[k], atol=1e-5) for k in x)
    p1, p2 = (load_file(tmp_path / "stacked" / f"p{s}.safetensors") for s in seeds[:2])
    assert any(not torch.allclose(p1[k], p2[k]) for k in p1), "seeds must differ"


def test_several_seeds_need_a_seed_placeholder(tmp_path):
    with pytest.raises(MvlptError, match="placeholder"):
        spec(tmp_path, "coop", (A,), seeds=[1, 2]).validate()


TOY_METHOD = """from mvlpt.models.prompts.coop import CoOp


class Front(CoOp):
    method = "front"

    def __init__(self, clip, classnames, n_ctx=4, generator=None):
        super().__init__(clip, classnames, n_ctx=n_ctx, position="front", generator=generator)
"""


def test_a_new_method_trains_from_its_module_and_one_registry_line(tmp_path, monkeypatch):
    """Adding a method = its module + one line in mvlpt.study.vocabulary.METHODS; the loop needs nothing else
    (its frozen image side is cached because the registry line says so)."""
    (tmp_path / "toy_front_method.py").write_text(TOY_METHOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(
        vocabulary.METHODS,
        "front",
        vocabulary.Method("front", "toy_front_method:Front", learns_text=True, learns_image=False, label="Front"),
    )
    s = spec(tmp_path, "front", (A,), train=TrainConfig(epochs=2, lr=0.01, warmup_epochs=0))
    trainer = Trainer(s)
    assert trainer.cache_images and trainer.members[0].data[0].train_x is None
    r = trainer.run()[0]
    assert r["method"] == "front" and r["method_options"] == {"n_ctx": 4, "position": "front", "csc": False}
    assert 0.0 <= r["test"] <= 1.0


def test_setting_hash_tells_training_settings_apart_but_not_seeds_tasks_or_sources():
    from mvlpt.training.config import TrainConfig

    base = RunSpec(method="coop", tasks=["shapes"], seeds=[1], shots=5, train=TrainConfig(epochs=3))
    same = [
        RunSpec(method="coop", tasks=["shapes", "textures"], seeds=[2], shots=5, train=TrainConfig(epochs=3)),
        RunSpec(
            method="coop",
            tasks=["textures"],
            seeds=[3],
            shots=5,
            train=TrainConfig(epochs=3),
            source="shapes",
            init_from="p.safetensors",
        ),
    ]
    other = [
        RunSpec(method="coop", tasks=["shapes"], seeds=[1], shots=5, train=TrainConfig(epochs=3, lr=0.01)),
        RunSpec(method="coop", tasks=["shapes"], seeds=[1], shots=10, train=TrainConfig(epochs=3)),
        RunSpec(method="coop", tasks=["shapes"], seeds=[1], shots=5, train=TrainConfig(epochs=3), method_options={"n_ctx": 4}),
        RunSpec(method="vpt", tasks=["shapes"], seeds=[1], shots=5, train=TrainConfig(epochs=3)),
    ]
    assert all(s.setting_hash() == base.setting_hash() for s in same)
    assert len({base.setting_hash(), *(s.setting_hash() for s in other)}) == 1 + len(other)
    # the runtime knobs are not part of a setting
    fast = RunSpec(method="coop", tasks=["shapes"], seeds=[1], shots=5, train=TrainConfig(epochs=3, eval_batch_size=7, workers=2))
    assert fast.setting_hash() == base.setting_hash()

"""Each point of the reference protocol (issue 27) changes what it claims, on the tiny model and the offline suite:
the joint checkpoint (mean_val), the joint few-shot images (union), the joint batch order (fixed), fp16 parameters,
per-token UPT, the averaged multitask source prompt, the hateful-memes metric; results record their protocol and
``collect`` refuses two protocols. The config side (the preset, a user's key wins): tests/study/test_protocol.py."""

import json

import pytest
import torch
from safetensors.torch import load_file

import fakes
from fakes import write_record
from mvlpt.analysis import tables
from mvlpt.errors import MvlptError
from mvlpt.models.prompts import build_prompt_learner
from mvlpt.study import results
from mvlpt.training.checkpoints import average_prompts, read_prompt_meta, save_prompt
from mvlpt.training.config import RunSpec, TrainConfig
from mvlpt.training.train import Trainer, run, union_seed

A, B = "shape-colours", "shapes"
NAMES = ["circle", "square", "triangle"]


def spec(tmp_path, tasks=(A, B), method="coop", **kw):
    kw.setdefault("train", TrainConfig(epochs=3, lr=0.01, checkpoint_every=0))
    return fakes.spec(tmp_path, method, tasks, **kw)


# --------------------------------------------------------------------------------------------------
# joint_checkpoint: mean_val
# --------------------------------------------------------------------------------------------------
# per epoch: (A's metric, loss), (B's metric, loss). A's own best is epoch 1, B's epoch 3, their mean's epoch 2.
SCRIPT = [((0.9, 0.1), (0.1, 1.0)), ((0.7, 0.2), (0.6, 0.5)), ((0.2, 0.3), (0.8, 0.4))]


def scripted_run(tmp_path, monkeypatch, joint_checkpoint):
    script = iter(SCRIPT)
    monkeypatch.setattr(Trainer, "validation", lambda self: [dict(zip((A, B), next(script)))])
    states = []
    original = Trainer.train_epoch

    def remember(self, e):
        loss = original(self, e)
        states.append({k: v.detach().clone() for k, v in self.members[0].learner.state_dict().items()})
        return loss

    monkeypatch.setattr(Trainer, "train_epoch", remember)
    train = TrainConfig(epochs=3, lr=0.01, checkpoint_every=0, joint_checkpoint=joint_checkpoint)
    s = spec(tmp_path, train=train, save_prompts={A: str(tmp_path / "a.safetensors")})
    return {r["target"]: r for r in run(s)}, states


def test_mean_val_picks_the_epoch_a_hand_computation_picks(tmp_path, monkeypatch):
    # by hand: the mean over the two tasks of each epoch's metric, the highest (no tie here)
    means = [(a[0] + b[0]) / 2 for a, b in SCRIPT]
    want = max(range(len(means)), key=means.__getitem__) + 1
    assert want == 2
    got, states = scripted_run(tmp_path / "mean", monkeypatch, "mean_val")
    assert {t: r["best_epoch"] for t, r in got.items()} == {A: want, B: want}, "one checkpoint for every target"
    # each target's val is its own validation metric at that epoch, the record says how it was chosen
    assert (got[A]["val"], got[B]["val"], got[A]["val_loss"]) == (0.7, 0.6, 0.2)
    assert got[A]["joint_checkpoint"] == got[B]["joint_checkpoint"] == "mean_val"
    saved = load_file(tmp_path / "mean" / "a.safetensors")
    assert all(torch.equal(saved[k], states[want - 1][k]) for k in saved), "the prompt reported is the mean's epoch's"


def test_per_task_keeps_each_targets_own_best(tmp_path, monkeypatch):
    got, _ = scripted_run(tmp_path / "own", monkeypatch, "per_task")
    assert {t: r["best_epoch"] for t, r in got.items()} == {A: 1, B: 3}
    assert "joint_checkpoint" not in got[A]


# --------------------------------------------------------------------------------------------------
# joint_order: fixed
# --------------------------------------------------------------------------------------------------
def plan_indices(trainer, epoch):
    return [(td.task.name, sel.tolist()) for step in trainer.epoch_plan(epoch) for _, parts in step for td, sel in parts]


@pytest.mark.parametrize("joint_batch", ["shared", "added"])
def test_fixed_order_repeats_the_first_epochs_batches_in_a_joint_run(tmp_path, joint_batch):
    fixed = Trainer(spec(tmp_path, train=TrainConfig(epochs=3, joint_order="fixed", joint_batch=joint_batch)))
    again = Trainer(spec(tmp_path, train=TrainConfig(epochs=3, joint_batch=joint_batch)))
    assert plan_indices(fixed, 0) == plan_indices(fixed, 1) == plan_indices(fixed, 2)
    assert plan_indices(again, 0) == plan_indices(fixed, 0), "the fixed order is the seed's first epoch's"
    assert plan_indices(again, 1) != plan_indices(again, 0), "reshuffle: a new order every epoch"


def test_fixed_order_leaves_a_single_task_run_reshuffled(tmp_path):
    single = Trainer(spec(tmp_path, tasks=(A,), train=TrainConfig(epochs=3, joint_order="fixed")))
    assert plan_indices(single, 1) != plan_indices(single, 0)


# --------------------------------------------------------------------------------------------------
# joint_fewshot: union
# --------------------------------------------------------------------------------------------------
def test_union_samples_a_joint_runs_images_anew_and_the_gain_check_lets_it_pass(tmp_path):
    union = TrainConfig(epochs=1, warmup_epochs=0, lr=0.01, checkpoint_every=0, joint_fewshot="union")
    base = Trainer(spec(tmp_path / "b", tasks=(A,), train=union))  # a single run keeps its own split
    joint = Trainer(spec(tmp_path / "j", train=union))
    swapped = Trainer(spec(tmp_path / "s", tasks=(B, A), train=union))
    plain = Trainer(spec(tmp_path / "p", train=TrainConfig(epochs=1, warmup_epochs=0)))
    a_base, a_joint = base.members[0].data[0], joint.members[0].data[0]
    assert plain.members[0].data[0].train_idx == a_base.train_idx, "split_files: the baseline's images"
    assert (a_joint.train_idx, a_joint.val_idx) != (a_base.train_idx, a_base.val_idx), "union: other images"
    assert len(a_joint.train_idx) == len(a_base.train_idx) and len(a_joint.val_idx) == len(a_base.val_idx)
    assert swapped.members[0].data[1].train_idx == a_joint.train_idx, "one sample per seed and set of tasks"
    assert union_seed(1, [A, B]) == union_seed(1, [B, A]) != union_seed(2, [A, B])
    # the records say so, and the paired-split check of a gain does not refuse them (it would otherwise)
    base_rec = run(spec(tmp_path / "b", tasks=(A,), train=union))[0]
    joint_rec = next(r for r in run(spec(tmp_path / "j", train=union)) if r["target"] == A)
    assert joint_rec["joint_fewshot"] == "union" and "joint_fewshot" not in base_rec
    assert joint_rec["splits"][A] != base_rec["splits"][A]
    found = [(tmp_path / "b.json", base_rec), (tmp_path / "j.json", joint_rec)]
    results.check_splits(found)
    with pytest.raises(MvlptError, match="another few-shot split"):
        results.check_splits([found[0], (found[1][0], {k: v for k, v in joint_rec.items() if k != "joint_fewshot"})])


# --------------------------------------------------------------------------------------------------
# precision: fp16
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["coop", "vpt"])
def test_fp16_trains_float16_parameters_on_float16_towers_on_the_cpu(tmp_path, method):
    s = spec(
        tmp_path,
        tasks=(A,),
        method=method,
        train=TrainConfig(epochs=2, lr=0.01, checkpoint_every=0, precision="fp16"),
        save_prompts={A: str(tmp_path / "p.safetensors")},
    )
    trainer = Trainer(s)
    before = {k: v.clone() for k, v in trainer.members[0].learner.named_parameters() if v.requires_grad}
    assert before and all(v.dtype == torch.float16 for v in before.values())
    assert torch.float16 in trainer.clip.low_precision and trainer.autocast_dtype == torch.float16
    r = trainer.run()[0]
    after = dict(trainer.members[0].learner.named_parameters())
    assert all(after[k].dtype == torch.float16 for k in before), "SGD kept them float16 (no float32 master copy)"
    assert any(not torch.equal(after[k], before[k]) for k in before), "and updated them"
    assert all(v.dtype == torch.float16 for v in load_file(tmp_path / "p.safetensors").values())
    assert 0.0 <= r["test"] <= 1.0
    fp32 = Trainer(spec(tmp_path / "32", tasks=(A,), method=method, train=TrainConfig(epochs=2, precision="fp32")))
    assert all(p.dtype == torch.float32 for p in fp32.members[0].learner.parameters())


# --------------------------------------------------------------------------------------------------
# UPT mix: per_token
# --------------------------------------------------------------------------------------------------
def test_per_token_upt_equals_the_block_applied_to_each_token_alone(tiny_clip):
    """The peer check: the reference feeds a (1, 13n, 128) tensor to a sequence-first block, so each token attends
    to itself only; softmax over one key is 1 and the attention output is out_proj(v_proj(ln_1(x))). Computed here
    from the block's weights, token by token, without the block's forward."""
    gen = torch.Generator().manual_seed(4)
    upt = build_prompt_learner("upt", tiny_clip, NAMES, {"mix": "per_token", "n_ctx": 2}, generator=gen)
    mixed = build_prompt_learner("upt", tiny_clip, NAMES, {"mix": "all", "n_ctx": 2})
    mixed.load_state_dict(upt.state_dict())
    blk, h = upt.block, upt.hidden
    with torch.no_grad():
        x = torch.cat([upt.down_t(upt.text_ctx), upt.down_v(upt.visual_ctx.reshape(-1, upt.visual_ctx.shape[-1]))])
        attn = blk.attn
        v = torch.nn.functional.linear(blk.ln_1(x), attn.in_proj_weight[2 * h :], attn.in_proj_bias[2 * h :])
        x = x + attn.out_proj(v)
        x = x + blk.mlp(blk.ln_2(x))
        want_text = upt.up_t(x[: upt.n_ctx])
        want_visual = upt.up_v(x[upt.n_ctx :]).reshape(upt.layers, upt.n_ctx, -1)
        text, visual = upt.generate()
        mixed_text, _ = mixed.generate()
    torch.testing.assert_close(text, want_text, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(visual, want_visual, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(mixed_text, want_text, atol=1e-5), "mix: all is another model"


# --------------------------------------------------------------------------------------------------
# multitask source_prompt: averaged
# --------------------------------------------------------------------------------------------------
def write_source(tiny_clip, path, seed, tasks=(B,), **changes):
    learner = build_prompt_learner("coop", tiny_clip, NAMES, {"n_ctx": 4}, generator=torch.Generator().manual_seed(seed))
    prov = {
        "task": "+".join(tasks),
        "tasks": list(tasks),
        "seed": seed,
        "shots": 5,
        "model": tiny_clip.name,
        "pretrained": tiny_clip.pretrained,
        "init_seed": tiny_clip.init_seed,
        "config_hash": f"hash{seed}",
        "splits": {t: f"split{seed}" for t in tasks},
        "best_epoch": seed,
        "mvlpt_version": "test",
        **changes,
    }
    save_prompt(learner, path, prov)
    return learner.state_dict()


def test_averaged_prompt_is_the_mean_of_the_seeds_tensors_and_starts_every_seed(tmp_path, tiny_clip):
    states = [write_source(tiny_clip, tmp_path / f"s{s}.safetensors", s) for s in (1, 2, 3)]
    prov = average_prompts([tmp_path / f"s{s}.safetensors" for s in (1, 2, 3)], tmp_path / "avg.safetensors")
    avg = load_file(tmp_path / "avg.safetensors")
    for k in avg:
        torch.testing.assert_close(avg[k], (states[0][k] + states[1][k] + states[2][k]) / 3, rtol=0, atol=1e-7)
    assert prov["averaged_seeds"] == [1, 2, 3] and prov["best_epoch"] == [1, 2, 3]
    assert read_prompt_meta(tmp_path / "avg.safetensors")[1] == prov
    # a sequential run of two seeds starts both from the one averaged prompt (no {seed} in --init-from)
    s = RunSpec(
        method="coop",
        tasks=[A],
        seeds=[1, 2],
        shots=5,
        method_options={"n_ctx": 4},
        train=TrainConfig(epochs=1, warmup_epochs=0),
        model=tiny_clip.name,
        pretrained=tiny_clip.pretrained,
        init_from=str(tmp_path / "avg.safetensors"),
        outputs={A: str(tmp_path / "out{seed}.json")},
    )
    trainer = Trainer(s)
    for m in trainer.members:
        assert all(torch.equal(m.learner.state_dict()[k].cpu(), avg[k]) for k in avg), m.seed
    records = trainer.run()
    assert {r["seed"]: r["init_prompt"]["config_hash"] for r in records} == {1: prov["config_hash"], 2: prov["config_hash"]}


def test_averaging_prompts_of_other_sources_or_one_seed_is_one_sentence(tmp_path, tiny_clip):
    write_source(tiny_clip, tmp_path / "a.safetensors", 1)
    write_source(tiny_clip, tmp_path / "b.safetensors", 2, tasks=(A,))
    with pytest.raises(MvlptError, match="differ in their tasks"):
        average_prompts([tmp_path / "a.safetensors", tmp_path / "b.safetensors"], tmp_path / "avg.safetensors")
    with pytest.raises(MvlptError, match="two or more seeds"):
        average_prompts([tmp_path / "a.safetensors"], tmp_path / "avg.safetensors")
    assert not (tmp_path / "avg.safetensors").exists()


def test_a_per_seed_prompt_still_has_to_match_the_runs_seed(tmp_path, tiny_clip):
    write_source(tiny_clip, tmp_path / "s1.safetensors", 1)
    s = RunSpec(
        method="coop",
        tasks=[A],
        seeds=[2],
        shots=5,
        method_options={"n_ctx": 4},
        model=tiny_clip.name,
        pretrained=tiny_clip.pretrained,
        init_from=str(tmp_path / "s1.safetensors"),
        outputs={A: str(tmp_path / "o.json")},
    )
    with pytest.raises(MvlptError, match="trained with seed 1, this run's seed is 2"):
        run(s)


# --------------------------------------------------------------------------------------------------
# hateful-memes metric
# --------------------------------------------------------------------------------------------------
def test_the_reference_scores_hateful_memes_by_accuracy():
    import numpy as np

    from mvlpt.study import protocol
    from mvlpt.tasks import get_task
    from mvlpt.tasks.elevater import scored_task
    from mvlpt.training.metrics import compute_metric

    ours = scored_task(get_task("hateful-memes"), protocol.run_defaults("corrected")["hateful_memes_metric"])
    ref = scored_task(get_task("hateful-memes"), protocol.run_defaults("reference")["hateful_memes_metric"])
    assert (ours.metric, ref.metric) == ("roc_auc", "accuracy")
    # scores whose ranking is perfect but whose argmax is wrong for one image: ROC-AUC 1, accuracy 3/4
    scores, labels = np.array([[0.0, -1.0], [0.0, 0.5], [0.0, -0.5], [0.0, -0.2]]), np.array([0, 1, 0, 1])
    assert compute_metric(ours.metric, scores, labels) == 1.0 and compute_metric(ref.metric, scores, labels) == 0.75


# --------------------------------------------------------------------------------------------------
# Results record their protocol; collect never mixes two
# --------------------------------------------------------------------------------------------------
def test_results_record_their_protocol(tmp_path):
    r = run(spec(tmp_path, tasks=(A,), train=TrainConfig(epochs=1, warmup_epochs=0), protocol="reference"))[0]
    assert r["protocol"] == "reference" == json.loads((tmp_path / f"{A}.json").read_text())["protocol"]


def test_collect_refuses_results_of_two_protocols(tmp_path):
    root = tmp_path / "results"
    for source, target in (("a", "a"), ("b", "b"), ("a", "b")):
        write_record(root, "coop", source, target, 1, protocol="reference")
    runs = tables.load_results(root)
    assert len(runs) == 3 and set(runs["protocol"]) == {"reference"}, "the runs table carries the protocol"
    write_record(root, "coop", "b", "a", 1)  # an older record: no protocol, i.e. corrected
    with pytest.raises(MvlptError) as e:
        tables.load_results(root, allow_mixed_settings=True)
    msg = str(e.value)
    assert "mix protocols, 1 under corrected" in msg and "3 under reference" in msg
    assert msg.endswith("give each protocol its own results_dir.")


def test_mvlpt_train_protocol_reference_sets_the_points_under_the_options_given(tmp_path, run_mvlpt):
    """`mvlpt train --protocol reference`: the preset's train options, an option given on the command line wins."""

    def train(out, *extra):
        args = ["train", "--method", "coop", "--task", A, "--task", B, "--epochs", 2, "--device", "cpu"]
        args += ["--output", f"{A}={out}", "--protocol", "reference", *extra]
        rc, errors, err = run_mvlpt(*args)
        assert rc == 0 and not errors, err
        return json.loads(out.read_text())

    ref = train(tmp_path / "ref.json")
    assert (ref["protocol"], ref["joint_checkpoint"], ref["joint_fewshot"]) == ("reference", "mean_val", "union")
    mine = train(tmp_path / "mine.json", "--train-options", '{"joint_checkpoint": "per_task", "precision": "fp32"}')
    assert mine["protocol"] == "reference" and "joint_checkpoint" not in mine and mine["joint_fewshot"] == "union"
    assert mine["config_hash"] != ref["config_hash"]


def test_a_resumed_mean_val_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    from fakes import kill_training_at

    train = TrainConfig(epochs=4, lr=0.01, checkpoint_every=1, joint_checkpoint="mean_val", joint_order="fixed")
    full = run(spec(tmp_path / "full", train=train, save_prompts={A: str(tmp_path / "full.safetensors")}))
    s = spec(
        tmp_path / "res",
        train=train,
        state_path=str(tmp_path / "state.safetensors"),
        save_prompts={A: str(tmp_path / "r.safetensors")},
    )
    kill_training_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(s)
    monkeypatch.undo()
    resumed = run(s)
    for a, b in zip(full, resumed):
        assert {k: a[k] for k in ("target", "test", "val", "val_loss", "best_epoch")} == {
            k: b[k] for k in ("target", "test", "val", "val_loss", "best_epoch")
        }
    assert read_prompt_meta(tmp_path / "r.safetensors")[1]["best_epoch"] == full[0]["best_epoch"], "the prompt says its epoch"

"""CoCoOp (mvlpt/models/prompts/cocoop.py): shapes against the reference, the meta network really
conditions the class text on the image, the batched per-image pass against a plain one per image,
chunked evaluation, learning, checkpoints, stacked seeds, pairwise and multitask runs through the CLI,
and the cost model and preflight pricing it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mvlpt.models.clip import load_clip
from mvlpt.models.prompts import build_prompt_learner, stacked_conditioned_text_features, stacked_logits
from mvlpt.models.prompts.text import normalize
from mvlpt.running import calibration, preflight
from mvlpt.study import vocabulary
from mvlpt.study.results import read_result
from mvlpt.tasks import get_task
from mvlpt.training.checkpoints import PROVENANCE, load_prompt, save_prompt

NAMES = ["red circle", "square", "green triangle"]
A, B, C = "shape-colours", "shapes", "glyph-digits"


@pytest.fixture(autouse=True)
def _one_thread():  # a shared 2-core machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clip():
    return load_clip("mvlpt-tiny", "synthetic", device="cpu", init_seed=0)


def cocoop(clip, options=None, names=NAMES, seed=0):
    return build_prompt_learner("cocoop", clip, names, options or {}, generator=torch.Generator().manual_seed(seed))


def _images(clip, n, seed=0):
    return torch.randint(
        0, 256, (n, 3, clip.image_size, clip.image_size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


# ------------------------------------------------------------------------------ shapes, exactness
def test_shapes_follow_the_reference(clip):
    lr = cocoop(clip)
    D, W = clip.model.visual.output_dim, clip.model.token_embedding.weight.shape[1]
    shapes = {k: tuple(v.shape) for k, v in lr.state_dict().items()}
    assert shapes == {
        "ctx": (16, W),
        "meta_net.0.weight": (D // 16, D),
        "meta_net.0.bias": (D // 16,),
        "meta_net.2.weight": (W, D // 16),
        "meta_net.2.bias": (W,),
    }
    assert lr.options() == {"n_ctx": 16, "position": "end"} and vocabulary.METHODS["cocoop"].caches_image_features
    dims = {"embed_dim": D, "text_width": W, "vision_width": 0, "layers": 0}
    assert type(lr).parameter_count(lr.options(), dims) == sum(p.numel() for p in lr.parameters())
    x = _images(clip, 5)
    with torch.no_grad():
        feats = lr.image_features(x)
        assert lr.logits(images=x).shape == (5, len(NAMES))
        assert stacked_conditioned_text_features([lr], [feats])[0].shape == (5, len(NAMES), D)
        assert lr.current_prompts(feats)["text"].shape == (5, 16, W)
    assert lr.text_features_once() is None  # evaluation cannot compute its class text once per pass
    with pytest.raises(ValueError, match="depend on the image"):
        lr.text_features()
    phrase = cocoop(clip, {"init": "a photo of a"})
    assert phrase.n_ctx == 4 and phrase.options() == {"n_ctx": 4, "position": "end"}


@pytest.mark.parametrize("position", ["end", "middle"])
def test_each_image_gets_the_plain_pass_of_its_shifted_context(clip, position):
    """The batched pass (every image's class prompts in one text-tower batch, each image's shared prefix
    once) equals, per image, the plain full pass of the context ``ctx + meta(f)``, and the logits are the
    scaled cosine of each image with its own class features."""
    lr = cocoop(clip, {"position": position, "n_ctx": 4})
    x = _images(clip, 4, seed=1)
    with torch.no_grad():
        f = lr.image_features(x)
        text = stacked_conditioned_text_features([lr], [f])[0]
        logits = lr.logits(feats=f)
        shift = lr.meta_net(f)
        for b in range(len(f)):
            emb = lr.layout.fill(lr.ctx + shift[b])
            plain = normalize(clip.encode_prompted_text(clip.model, emb, lr.layout.eot_pos))
            torch.testing.assert_close(text[b], plain, atol=1e-5, rtol=1e-5)
            want = clip.model.logit_scale.exp() * f[b] @ plain.t()
            torch.testing.assert_close(logits[b], want, atol=1e-4, rtol=1e-5)


def test_the_meta_network_conditions_the_class_text_on_the_image(clip):
    lr = cocoop(clip, {"n_ctx": 4})
    x = _images(clip, 2, seed=3)
    with torch.no_grad():
        f = lr.image_features(x)
        assert not torch.allclose(f[0], f[1])
        text = stacked_conditioned_text_features([lr], [f])[0]
        assert (text[0] - text[1]).abs().max() > 1e-4  # two images, two sets of class features
        # with the meta network's output layer zeroed every image gets CoOp's prompt with the same context
        lr.meta_net[2].weight.zero_()
        lr.meta_net[2].bias.zero_()
        same = stacked_conditioned_text_features([lr], [f])[0]
        torch.testing.assert_close(same[0], same[1])
        coop = build_prompt_learner("coop", clip, NAMES, {"n_ctx": 4, "position": "end"})
        coop.ctx.copy_(lr.ctx)
        torch.testing.assert_close(same[0], coop.text_features(), atol=1e-5, rtol=1e-5)


def test_evaluation_in_chunks_equals_one_pass_and_gradients_reach_ctx_and_meta_network(clip):
    lr = cocoop(clip, {"n_ctx": 4})
    x = _images(clip, 7, seed=4)
    with torch.no_grad():
        whole = lr.logits(images=x)
        lr.eval_text_rows = 2 * len(NAMES)  # two images per text-tower call
        chunked = lr.logits(images=x)
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=1e-5)
    loss = F.cross_entropy(lr.logits(images=x), torch.tensor([0, 1, 2, 0, 1, 2, 0]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lr.parameters())
    assert all(p.grad is None for p in clip.model.parameters())


def test_stacked_seeds_equal_each_alone(clip):
    learners = [cocoop(clip, {"n_ctx": 4}, seed=s) for s in (1, 2)]
    xs = [_images(clip, 3, seed=5), _images(clip, 2, seed=6)]
    with torch.no_grad():
        stacked = stacked_logits(learners, images=xs)
        for lr, x, got in zip(learners, xs, stacked):
            torch.testing.assert_close(got, lr.logits(images=x), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ learning
def test_cocoop_learns_a_tiny_task(clip):
    """Full-batch SGD on cached features of a few-shot offline task: the training loss falls and the
    training accuracy rises, averaged over two seeds; with lr 0 nothing changes."""
    task = get_task("shapes")
    s = task.load("train")
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(s.labels == c), 4, replace=False) for c in range(task.num_classes)])
    x = torch.from_numpy(np.ascontiguousarray(s.images[idx])).permute(0, 3, 1, 2)
    feats, y = clip.encode_images(clip.normalize(x)), torch.as_tensor(s.labels[idx])

    def fit(seed, lr_value, steps=25):
        lr = cocoop(clip, {"n_ctx": 4}, names=list(task.classnames), seed=seed)
        opt = torch.optim.SGD(lr.parameters(), lr=lr_value, momentum=0.9)

        def evaluate():
            logits = lr.logits(feats=feats)
            return F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean().item()

        with torch.no_grad():
            before = evaluate()
        for _ in range(steps):
            loss, _ = evaluate()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            after = evaluate()
        return before[0].item(), before[1], after[0].item(), after[1]

    runs = np.array([fit(seed, 0.02) for seed in (1, 2)])
    loss0, acc0, loss1, acc1 = runs.mean(0)
    assert loss1 < 0.7 * loss0, runs.tolist()
    assert acc1 > acc0 + 0.1, runs.tolist()
    l0, a0, l1, a1 = fit(1, 0.0, steps=2)
    assert (l0, a0) == (l1, a1)


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip_and_other_class_names(clip, tmp_path):
    lr = cocoop(clip, {"n_ctx": 4}, seed=7)
    with torch.no_grad():
        for p in lr.parameters():
            p.add_(0.01)
    prov = {k: None for k in PROVENANCE}
    prov.update(
        task="shapes",
        tasks=["shapes"],
        seed=1,
        shots=4,
        model=clip.name,
        pretrained=clip.pretrained,
        init_seed=clip.init_seed,
        splits={},
        best_epoch=0,
        mvlpt_version="test",
    )
    path = tmp_path / "p.safetensors"
    save_prompt(lr, path, prov)
    back = cocoop(clip, {"n_ctx": 4}, seed=8)
    load_prompt(back, path)
    x = _images(clip, 3, seed=9)
    with torch.no_grad():
        assert torch.equal(back.logits(images=x), lr.logits(images=x))
    other = cocoop(clip, {"n_ctx": 4}, names=["cat", "dog"], seed=8)  # a sequential run: the prompt meets other classes
    load_prompt(other, path)
    assert all(torch.equal(a, b) for a, b in zip(other.parameters(), lr.parameters()))


# ------------------------------------------------------------------------------ through the CLI
def _train(run_mvlpt, tmp_path, *args):
    res = run_mvlpt(
        "train",
        "--method",
        "cocoop",
        "--pretrained",
        "synthetic",
        "--seed",
        1,
        "--seed",
        2,
        "--shots",
        3,
        "--epochs",
        2,
        "--method-options",
        json.dumps({"n_ctx": 4}),
        "--cache-dir",
        tmp_path / "cache",
        *args,
    )
    assert res.rc == 0, res.stderr
    return res


def test_pairwise_single_joint_and_sequential_runs(run_mvlpt, tmp_path):
    out = tmp_path / "r"
    _train(
        run_mvlpt,
        tmp_path,
        "--task",
        A,
        "--output",
        f"{A}={out}/a_{{seed}}.json",
        "--save-prompt",
        f"{A}={out}/a_{{seed}}.safetensors",
    )
    _train(
        run_mvlpt,
        tmp_path,
        "--task",
        A,
        "--task",
        B,
        "--output",
        f"{A}={out}/ab_a_{{seed}}.json",
        "--output",
        f"{B}={out}/ab_b_{{seed}}.json",
    )
    _train(
        run_mvlpt,
        tmp_path,
        "--task",
        B,
        "--init-from",
        f"{out}/a_{{seed}}.safetensors",
        "--output",
        f"{B}={out}/seq_{{seed}}.json",
    )
    for seed in (1, 2):
        single, joint, seq = (read_result(out / f"{n}_{seed}.json") for n in ("a", "ab_b", "seq"))
        assert (single["method"], single["mode"], single["source"]) == ("cocoop", "single", A)
        assert (joint["mode"], joint["source"]) == ("joint", A)
        assert (seq["mode"], seq["source"], seq["init_prompt"]["task"]) == ("sequential", A, A)
        assert single["method_options"] == {"n_ctx": 4, "position": "end"} and 0 <= single["test"] <= 1


def test_multitask_group_source_target_and_joint_runs(run_mvlpt, tmp_path):
    out = tmp_path / "mt"
    _train(run_mvlpt, tmp_path, "--task", A, "--task", B, "--save-group-prompt", f"{out}/g_{{seed}}.safetensors")
    _train(
        run_mvlpt, tmp_path, "--task", C, "--init-from", f"{out}/g_{{seed}}.safetensors", "--output", f"{C}={out}/t_{{seed}}.json"
    )
    _train(
        run_mvlpt,
        tmp_path,
        "--task",
        A,
        "--task",
        B,
        "--task",
        C,
        "--train-options",
        '{"head": "per_task"}',
        *(x for t in (A, B, C) for x in ("--output", f"{t}={out}/j_{t}_{{seed}}.json")),
    )
    target = read_result(out / "t_1.json")
    assert target["mode"] == "sequential" and target["init_prompt"]["tasks"] == [A, B]
    joint = read_result(out / f"j_{C}_2.json")
    assert joint["source"] == f"{A}+{B}" and joint["method"] == "cocoop"


# ------------------------------------------------------------------------------ cost and preflight
def test_cost_and_preflight_price_it_from_coop_and_say_how(tmp_path, monkeypatch):
    monkeypatch.setenv("MVLPT_COST_CALIBRATION", str(tmp_path / "none.json"))
    cfg = {
        "tasks": [A, B, C],
        "methods": ["coop", "cocoop"],
        "seeds": [1, 2],
        "shots": 5,
        "model": {"name": "mvlpt-tiny", "pretrained": "synthetic"},
        "train": {"epochs": 2, "batch_size": 8},
        "results_dir": str(tmp_path / "results"),
        "cache_dir": str(tmp_path / "cache"),
    }
    rep = preflight.run(cfg, multitask=True)
    assert rep.ok, rep.problems
    notes = [
        w
        for w in rep.warnings
        if w.startswith("cost: cocoop: the calibration has no figures of its own: priced with coop's coefficients")
    ]
    assert len(notes) == 1 and "one set of class prompts per image" in notes[0], rep.warnings
    per = rep.cost["per_method"]
    # the same jobs as CoOp's but the frozen-feature jobs (shared), and a text pass per image: dearer
    assert per["cocoop"]["jobs"] == per["coop"]["jobs"] - len(cfg["tasks"])
    assert per["cocoop"]["breakdown_h"]["train"] > per["coop"]["breakdown_h"]["train"]
    # a step's text term is CoOp's times the images of the batch (one set of class prompts per image)
    cal = calibration.shipped_calibration()
    fixed = cal.coefficients("coop")["step"]["fixed_ms"] / 1e3
    shape = {"seeds": 2, "classes": 10, "length": 20, "batch": 8, "prefix": 9}
    assert cal.step_s("cocoop", **shape) - fixed == pytest.approx(8 * (cal.step_s("coop", **shape) - fixed))
    assert per["cocoop"]["breakdown_h"]["features"] == 0 < per["coop"]["breakdown_h"]["features"]
    assert "cocoop" in rep.cost["multitask"]["per_method"]
    assert any(a.startswith("cocoop: the calibration has no figures") for a in rep.cost["multitask"]["assumptions"])


# ------------------------------------------------------------------------------ the prompt predictors
def test_prompt_predictors_score_a_task_own_prompt_as_training_validated_it(clip, tmp_path):
    """The prompt predictors (mvlpt.transfer.prompt_views.prompt_views) run the same forward as the trainer: a
    task's own CoCoOp prompt on its few-shot val images gives the record's `val`."""
    from mvlpt.tasks.fewshot import make_split, write_split
    from mvlpt.training.config import RunSpec, TrainConfig
    from mvlpt.training.train import run
    from mvlpt.transfer import prompt_views

    tasks, prompts, splits, val = [A, B], {}, {}, {}
    for t in tasks:
        splits[(t, 1)] = tmp_path / f"{t}.json"
        write_split(make_split(get_task(t), 1, 3), splits[(t, 1)])
        prompts[(t, 1)] = tmp_path / f"{t}.safetensors"
        spec = RunSpec(
            method="cocoop",
            tasks=[t],
            seeds=[1],
            shots=3,
            pretrained="synthetic",
            method_options={"n_ctx": 4},
            train=TrainConfig(epochs=2, lr=0.01),
            split_files={t: str(splits[(t, 1)])},
            outputs={t: str(tmp_path / f"{t}.result.json")},
            save_prompts={t: str(prompts[(t, 1)])},
            cache_dir=str(tmp_path / "cache"),
        )
        val[t] = run(spec)[0]["val"]
    views = prompt_views.prompt_views(clip, "cocoop", tasks, prompts, splits)
    for t in tasks:
        assert views.metric[1][t][t] == pytest.approx(val[t], abs=1e-9)
    assert views.logits[1][A][B].shape[1] == get_task(A).num_classes


def test_the_workflow_takes_it_by_its_name_alone(tmp_path):
    """`methods: [coop, cocoop]` builds the study's DAG (no schema or rule edit): every pair of both
    methods, one frozen-feature job per task serving both, the multitask study included."""
    import yaml

    from studies import job_counts, snakemake

    cfg = {
        "tasks": [A, B, C],
        "methods": ["coop", "cocoop"],
        "seeds": [1],
        "shots": 5,
        "model": {"name": "mvlpt-tiny", "pretrained": "synthetic", "init_seed": 0},
        "train": {"epochs": 2},
    }
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "-n", "--quiet", "rules", "--", "all", "multitask", configfile=configfile)
    assert res.returncode == 0, res.stderr + res.stdout
    jobs = job_counts(res.stdout + res.stderr)
    assert jobs["train_single"] == 2 * 3 and jobs["train_joint"] == 2 * 3 and jobs["frozen_features"] == 3

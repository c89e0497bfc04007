"""The training step's speed-ups compute what the plain path computes (issue 12).

* frozen weights cast once to bf16 = autocast casting them on every call (bit for bit);
* few-shot data and targets on the training device, indices of an epoch copied once, per-step
  losses kept on the device and read once per epoch, foreach SGD = the plain per-step loop;
* a step reads nothing back to the host.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mvlpt.errors import MvlptError
from mvlpt.models.clip import FrozenCLIP, load_clip
from mvlpt.models.prompts import build_prompt_learner, stacked_logits
from mvlpt.training.config import RunSpec, TrainConfig
from mvlpt.training.train import Trainer, _targets, lr_at, run

A, B = "shape-colours", "shapes"
NAMES = ["circle", "square", "red triangle"]
BF16 = torch.bfloat16


def spec(tmp_path, method, tasks=(A,), seeds=(1,), **train):
    train = TrainConfig(**{"epochs": 3, "lr": 0.01, "warmup_epochs": 0, "batch_size": 8, "batch_size_multitask": 16, **train})
    outputs = {t: str(tmp_path / f"{t}_{{seed}}.json") for t in tasks}
    prompts = {tasks[0]: str(tmp_path / "p{seed}.safetensors")}
    return RunSpec(
        method=method,
        tasks=list(tasks),
        seeds=list(seeds),
        shots=5,
        train=train,
        outputs=outputs,
        save_prompts=prompts,
        pretrained="synthetic",
    )


@pytest.fixture(autouse=True)
def _one_thread():  # a shared 2-core machine: more threads spin against other processes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(clip, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, clip.image_size, clip.image_size), dtype=torch.uint8, generator=g)


# ------------------------------------------------------------------------------ frozen weights cast once
@pytest.mark.parametrize("method", ["coop", "vpt", "upt"])
def test_cast_once_logits_and_gradients_equal_autocast(method):
    clip = load_clip("mvlpt-tiny", "synthetic", device="cpu")
    learners = [
        build_prompt_learner(method, clip, NAMES, {"n_ctx": 2}, generator=torch.Generator().manual_seed(s)) for s in (1, 2)
    ]
    images = [_images(clip, n, seed=n) for n in (3, 2)]

    def forward(train: bool):
        for lr in learners:
            lr.train(train)
            lr.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(train):
            logits = stacked_logits(learners, images=images, autocast=BF16)
        grads = []
        if train:
            torch.cat(logits).square().sum().backward()
            grads = [p.grad.clone() for lr in learners for p in lr.parameters() if p.requires_grad]
        return [lg.detach() for lg in logits], grads

    plain = [forward(True), forward(False)]
    clip.cast_frozen(BF16)
    lowp = clip.tower_model(BF16)
    assert lowp is not clip.model and clip.tower_model(None) is clip.model
    blocks = lowp.visual.transformer.resblocks
    assert lowp.visual.conv1.weight.dtype == BF16 and blocks[0].attn.in_proj_weight.dtype == BF16
    assert blocks[0].mlp.c_fc.weight.dtype == BF16 and lowp.text_projection.dtype == BF16
    assert blocks[0].ln_1.weight.dtype == torch.float32 and lowp.logit_scale.dtype == torch.float32
    assert clip.model.visual.conv1.weight.dtype == torch.float32, "the float32 model stays as it was"
    cast = [forward(True), forward(False)]
    for (lp, gp), (lc, gc) in zip(plain, cast):
        assert all(torch.equal(a, b) for a, b in zip(lp, lc)), method
        assert len(gp) == len(gc) and all(torch.equal(a, b) for a, b in zip(gp, gc)), method
    # the comparison can fail: the bf16 path is not the float32 one
    with torch.no_grad():
        fp32 = stacked_logits(learners, images=images)
    assert not torch.equal(fp32[0], cast[1][0][0])


def test_cast_once_text_residual_stream_stays_float32():
    """The cast copy's weights are bf16, but the text tower's residual stream keeps the float32
    original's dtype (open_clip takes it from the weights; without the fix logits differ)."""
    from mvlpt.models.prompts.text import encode_prompted_text

    clip = load_clip("mvlpt-tiny", "synthetic", device="cpu")
    clip.cast_frozen(BF16)
    x = torch.randn(2, 7, clip.model.token_embedding.weight.shape[1])
    eot = torch.tensor([6, 6])
    with torch.autocast("cpu", dtype=BF16):
        plain = encode_prompted_text(clip.model, x, eot)
        cast = encode_prompted_text(clip.tower_model(BF16), x, eot, clip.model.transformer.get_cast_dtype())
        naive = encode_prompted_text(clip.tower_model(BF16), x, eot)
    assert torch.equal(plain, cast)
    assert not torch.equal(plain, naive)


@pytest.mark.parametrize("method,tasks", [("coop", (A,)), ("vpt", (A, B)), ("upt", (A, B))])
def test_bf16_training_with_cast_once_equals_autocast_only(tmp_path, monkeypatch, method, tasks):
    from safetensors.torch import load_file

    cast = run(spec(tmp_path / "cast", method, tasks, seeds=(1, 2), precision="bf16"))
    monkeypatch.setattr(FrozenCLIP, "cast_frozen", lambda self, dtype: None)  # the autocast-only path
    plain = run(spec(tmp_path / "plain", method, tasks, seeds=(1, 2), precision="bf16"))
    key = ("target", "seed", "test", "val", "best_epoch")
    assert [[r[k] for k in key] for r in cast] == [[r[k] for k in key] for r in plain]
    for seed in (1, 2):
        a, b = load_file(tmp_path / "cast" / f"p{seed}.safetensors"), load_file(tmp_path / "plain" / f"p{seed}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fp32_training_makes_no_cast_copy(tmp_path):
    trainer = Trainer(spec(tmp_path, "upt", precision="fp32"))
    assert trainer.autocast_dtype is None and trainer.clip.low_precision == {}
    assert Trainer(spec(tmp_path, "upt", precision="bf16")).clip.tower_model(BF16).visual.conv1.weight.dtype == BF16


# ------------------------------------------------------------------------------ the training loop
def plain_train_epoch(trainer: Trainer, epoch: int) -> float:
    """The loop as it was before issue 12: indices and targets made on the host per step, inputs
    moved per step, every loss read and checked on the host per step."""
    cfg = trainer.cfg
    for g in trainer.optimizer.param_groups:
        g["lr"] = lr_at(epoch, cfg)
    bs = cfg.batch_size if len(trainer.tasks) == 1 else cfg.batch_size_multitask
    plans = []
    for m in trainer.members:
        owners, local = m.union()
        gen = torch.Generator().manual_seed(m.seed * 100_003 + epoch)
        plans.append((m, owners, local, torch.randperm(len(owners), generator=gen).numpy()))
    n_steps = max(math.ceil(len(order) / bs) for *_, order in plans)
    for m in trainer.members:
        m.learner.train()
    total = 0.0
    for step in range(n_steps):
        active, images, feats, targets, masks = [], [], [], [], []
        for m, owners, local, order in plans:
            chunk = order[step * bs : (step + 1) * bs]
            if len(chunk) == 0:
                continue
            xs, fs, ts, ms = [], [], [], []
            for k, td in enumerate(m.data):
                sel = local[chunk[owners[chunk] == k]]
                if len(sel) == 0:
                    continue
                x, f = td.inputs("train", torch.as_tensor(sel))
                xs.append(None if x is None else x.cpu()), fs.append(None if f is None else f.cpu())
                ts.append(_targets(td.train_y[sel], td.offset, trainer.n_classes, td.task.multilabel))
                mask = torch.zeros(len(sel), trainer.n_classes, dtype=torch.bool)
                mask[:, td.classes] = True
                ms.append(mask)
            active.append(m)
            images.append(torch.cat(xs) if xs[0] is not None else None)
            feats.append(torch.cat(fs) if fs[0] is not None else None)
            targets.append(torch.cat(ts))
            masks.append(torch.cat(ms))
        losses = []
        for m, logits, target, mask in zip(active, trainer._logits(active, images, feats), targets, masks):
            if cfg.head == "per_task":
                logits = logits.masked_fill(~mask.to(logits.device), float("-inf"))
            target = target.to(logits.device)
            logp = F.log_softmax(logits, dim=-1)
            loss = -(target * logp.masked_fill(target == 0, 0)).sum(1).mean()
            if not torch.isfinite(loss):
                raise MvlptError(
                    f"the training loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                    f"(method {trainer.spec.method}, tasks {', '.join(trainer.spec.tasks)}, seed {m.seed}, "
                    f"lr {trainer.optimizer.param_groups[0]['lr']:g}); lower the learning rate or check the data."
                )
            losses.append(loss)
        trainer.optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        trainer.optimizer.step()
        total += float(sum(loss.item() for loss in losses)) / len(losses)
    return total / max(n_steps, 1)


def _plain_trainer(s) -> Trainer:
    """A Trainer with the plain for-loop SGD (torch's default on the CPU) instead of foreach."""
    t = Trainer(s)
    params = [p for g in t.optimizer.param_groups for p in g["params"]]
    cfg = t.cfg
    t.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=False)
    return t


@pytest.mark.parametrize(
    "method,tasks,train",
    [
        ("coop", (A, B), {"head": "per_task"}),
        ("vpt", (A, B), {}),
        ("upt", (A,), {"precision": "bf16", "batch_size": 16}),
        ("coop", (A,), {"cache_features": False}),
    ],
)
def test_training_loop_equals_the_plain_per_step_loop(tmp_path, method, tasks, train):
    s = spec(tmp_path, method, tasks, seeds=(1, 2), **train)
    fast, plain = Trainer(s), _plain_trainer(s)
    assert fast.optimizer.defaults["foreach"] is True
    td = fast.members[0].data[0]
    assert all(
        t is None or t.device.type == torch.device(fast.device).type
        for t in (td.train_x, td.val_x, td.train_f, td.val_f, td.train_t, td.class_mask)
    )
    for epoch in range(2):
        assert fast.train_epoch(epoch) == plain_train_epoch(plain, epoch)
    for a, b in zip(fast.members, plain.members):
        sa, sb = a.learner.state_dict(), b.learner.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), method
    for va, vb in zip(fast.validate(), plain.validate()):
        assert va == vb


def test_nan_loss_is_found_at_the_end_of_the_epoch_with_the_plain_loops_message(tmp_path):
    s = spec(tmp_path, "coop", (A, B), seeds=(1, 2), lr=1e30, epochs=3)
    with pytest.raises(MvlptError) as fast:
        Trainer(s).train_epoch(0)
    with pytest.raises(MvlptError) as plain:
        plain_train_epoch(_plain_trainer(s), 0)
    assert str(fast.value) == str(plain.value)
    assert "training loss became nan at epoch 1, step 2 " in str(fast.value) and "seed 1," in str(fast.value)


def test_a_training_step_reads_nothing_back_to_the_host(tmp_path, monkeypatch):
    """No ``item()``, ``tolist()``, ``bool(tensor)``, ``numpy()`` or ``cpu()`` in a step: on a GPU each
    would wait for the device (the epoch reads its losses once, at its end)."""
    trainer = Trainer(spec(tmp_path, "upt", (A, B), seeds=(1, 2)))
    plan = trainer.epoch_plan(0)
    reads = []
    for name in ("item", "tolist", "__bool__", "numpy", "cpu", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def spy(self, *a, _name=name, _original=original, **k):
            reads.append(_name)
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    losses = [trainer.train_step(batch) for batch in plan[:2]]
    assert reads == [], reads
    torch.cat(losses).tolist()
    assert reads == ["tolist"]  # the spy works


def test_sgd_foreach_equals_the_for_loop():
    g = torch.Generator().manual_seed(0)
    shapes = [(16, 8), (3, 4, 8), (8,)]
    params = {f: [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes] for f in (True, False)}
    for p, q in zip(*params.values()):
        q.data.copy_(p.data)
    opts = {f: torch.optim.SGD(ps, lr=0.002, momentum=0.9, weight_decay=5e-4, foreach=f) for f, ps in params.items()}
    for _ in range(5):
        grads = [torch.randn(s, generator=g) for s in shapes]
        for f, ps in params.items():
            for p, gr in zip(ps, grads):
                p.grad = gr.clone()
            opts[f].step()
    assert all(torch.equal(p, q) for p, q in zip(*params.values()))
    assert not np.allclose(params[True][0].detach().numpy(), 0)

"""Train option ``compile``: the prompted towers through torch.compile compute what eager computes (issue 12).

Inductor, the backend a run uses, takes about 25 s on the shared 2-core CPU machine for one
method's forward and backward graphs of both towers, so it is compared with eager once, on UPT
(text and image prompts both learn: both towers' forward and backward graphs). The other tests use
``backend="aot_eager"``: the same dynamo tracing (``fullgraph=True``, ``dynamic=False``), guards,
recompiles and AOTAutograd forward/backward split as inductor, without generating C++ kernels, so
they check the wiring, CoOp and VPT, a training run and the graph count in seconds. Dynamo's caches
are reset around every test (its compiled entries live on the encoders' code objects, per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from mvlpt.errors import MvlptError
from mvlpt.models import clip as clip_module
from mvlpt.models.clip import FrozenCLIP, compiled_graphs, load_clip
from mvlpt.models.prompts import build_prompt_learner, stacked_logits
from mvlpt.training.config import RunSpec, TrainConfig
from mvlpt.training.train import Trainer, run

A, B = "shape-colours", "shapes"
NAMES = ["circle", "square", "red triangle"]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()
    torch.set_num_threads(threads)


@pytest.fixture
def aot_eager(monkeypatch):
    """Trainers compile with backend aot_eager (see the module docstring)."""
    compile_ = FrozenCLIP.compile
    monkeypatch.setattr(FrozenCLIP, "compile", lambda self, mode="default", backend="aot_eager": compile_(self, mode, backend))


def _images(clip, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, clip.image_size, clip.image_size), dtype=torch.uint8, generator=g)


def _forward(learners, images, train: bool):
    """Logits of a stack of two learners, and (training) the prompt gradients of a loss on them."""
    for lr in learners:
        lr.train(train)
        lr.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(train):
        logits = stacked_logits(learners, images=images)
    grads = []
    if train:
        torch.cat(logits).log_softmax(-1).square().sum().backward()
        grads = [p.grad.clone() for lr in learners for p in lr.parameters() if p.requires_grad]
    return [lg.detach() for lg in logits], grads


def _compare_with_eager(method, backend, train_only=False):
    clip = load_clip("mvlpt-tiny", "synthetic", device="cpu")
    learners = [
        build_prompt_learner(method, clip, NAMES, {"n_ctx": 2}, generator=torch.Generator().manual_seed(s)) for s in (1, 2)
    ]
    images = [_images(clip, n, seed=n) for n in (3, 2)]
    grad_modes = (True,) if train_only else (True, False)
    eager = [_forward(learners, images, train) for train in grad_modes]
    clip.compile("default", backend=backend)
    compiled = [_forward(learners, images, train) for train in grad_modes]
    graphs = compiled_graphs()
    assert graphs >= len(grad_modes), "the compiled encoders ran"
    for (le, ge), (lc, gc) in zip(eager, compiled):
        for a, b in zip(le, lc):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
        assert len(ge) == len(gc)
        for a, b in zip(ge, gc):
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4 * a.abs().max().item())
    assert any(g.abs().max() > 0 for g in eager[0][1]), "the gradients compared are not all zero"
    compiled_again = _forward(learners, images, True)
    assert compiled_graphs() == graphs, "a second step with the same shapes compiles nothing"
    assert all(torch.equal(a, b) for a, b in zip(compiled[0][0], compiled_again[0]))
    clip.compile("none")
    assert all(torch.equal(a, b) for a, b in zip(eager[0][0], _forward(learners, images, True)[0])), "none: eager again"


@pytest.mark.slow
def test_inductor_logits_and_gradients_equal_eager():
    """UPT: learned text and image prompts, both towers' forward and backward through inductor (the
    graphs without grad are compared with aot_eager below, to keep this file near a minute)."""
    _compare_with_eager("upt", "inductor", train_only=True)


@pytest.mark.parametrize("method", ["coop", "vpt"])
def test_compiled_logits_and_gradients_equal_eager(method):
    """CoOp (text tower with grad, frozen image tower without) and VPT (image tower with grad)."""
    _compare_with_eager(method, "aot_eager")


def spec(tmp_path, method, **train):
    train = TrainConfig(**{"epochs": 2, "lr": 0.01, "warmup_epochs": 0, "batch_size_multitask": 20, **train})
    return RunSpec(
        method=method,
        tasks=[A, B],
        seeds=[1, 2],
        shots=5,
        train=train,
        pretrained="synthetic",
        outputs={t: str(tmp_path / f"{t}_{{seed}}.json") for t in (A, B)},
        cache_dir=str(tmp_path / "cache"),
    )


@pytest.mark.slow
def test_compiled_training_run_equals_eager_with_bounded_graphs(tmp_path, aot_eager, capsys):
    """A joint UPT run of two stacked seeds, 2 epochs: the same metrics and best epochs as eager; the
    graphs are compiled in the first epoch (its last, shorter batch and the validation batches
    included) and later epochs compile none; the record and the log line say how many and how long."""
    eager = run(spec(tmp_path / "eager", "upt"))
    compiled = run(spec(tmp_path / "compiled", "upt", compile="default"))
    key = ("target", "seed", "best_epoch")
    assert [[r[k] for k in key] for r in compiled] == [[r[k] for k in key] for r in eager]
    for a, b in zip(eager, compiled):
        assert b["test"] == pytest.approx(a["test"], abs=1e-6) and b["val"] == pytest.approx(a["val"], abs=1e-6)
        assert "compile" not in a and a["config_hash"] == b["config_hash"], "compile is a runtime option"
        assert b["compile"]["mode"] == "default" and b["compile"]["compile_s"] > 0 and b["compile"]["graphs"] >= 3
    err = capsys.readouterr().err
    assert "torch.compile (default):" in err and "graphs compiled in" in err
    on_disk = json.loads((tmp_path / "compiled" / f"{A}_1.json").read_text())
    assert on_disk["compile"] == compiled[0]["compile"]

    torch._dynamo.reset()
    counters.clear()
    trainer = Trainer(spec(tmp_path / "steps", "upt", compile="default", epochs=4))
    for epoch in range(2):
        trainer.train_epoch(epoch)
        trainer.validate()
        if epoch == 0:
            first = compiled_graphs()
    steps = len(trainer.epoch_plan(0))
    assert steps >= 2 and len({sum(len(sel) for _, parts in b for _, sel in parts) for b in trainer.epoch_plan(0)}) == 2
    # text (train, eval) + image (full and last train batch, validation batches): <= 6, not one per step
    assert 3 <= first <= 6, first
    assert compiled_graphs() == first, "the second epoch compiled nothing"


def test_recompile_limit_is_an_error_not_a_silent_fallback(monkeypatch):
    clip = load_clip("mvlpt-tiny", "synthetic", device="cpu")
    learner = build_prompt_learner("vpt", clip, NAMES, {"n_ctx": 2}, generator=torch.Generator().manual_seed(1))
    clip.compile("default", backend="aot_eager")
    monkeypatch.setattr(clip_module, "RECOMPILE_LIMIT", 1)
    with torch.no_grad():
        stacked_logits([learner], images=[_images(clip, 2, 0)])
        with pytest.raises(MvlptError, match=r"^torch\.compile \(train option compile: default\) failed: .*compile: none"):
            stacked_logits([learner], images=[_images(clip, 3, 0)])  # a second shape: a recompile past the limit


def test_compile_option_is_validated_and_a_runtime_option():
    with pytest.raises(MvlptError, match=r"^compile must be one of none, default, reduce-overhead, .*got 'fast'\.$"):
        TrainConfig.from_dict({"compile": "fast"})
    assert TrainConfig.from_dict({"compile": "reduce-overhead"}).hashable() == TrainConfig().hashable()
    assert TrainConfig().compile == "none"


def test_a_compiler_failure_ends_in_one_sentence(tmp_path, run_mvlpt):
    """Inductor without a working C++ compiler (its code caches off, so that it must compile)."""
    import torch._functorch.config
    import torch._inductor.config

    # torch's config.patch, not monkeypatch: monkeypatch's undo on torch's config proxies deletes the option
    with (
        torch._inductor.config.patch({"cpp.cxx": (str(tmp_path / "no-such-c++"),), "fx_graph_cache": False}),
        torch._functorch.config.patch(enable_autograd_cache=False),
    ):
        rc, errors, stderr = run_mvlpt(
            "train",
            "--method",
            "vpt",
            "--task",
            A,
            "--shots",
            2,
            "--pretrained",
            "synthetic",
            "--train-options",
            json.dumps({"epochs": 1, "warmup_epochs": 0, "compile": "default"}),
            "--output",
            f"{A}={tmp_path / 'r.json'}",
        )
    assert rc == 2 and len(errors) == 1, stderr[-3000:]
    assert "torch.compile (train option compile: default) failed" in errors[0] and "`train: {compile: none}`" in errors[0]
    assert "Traceback" not in stderr and not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_runs_sharing_a_compile_cache_load_what_an_earlier_run_compiled(tmp_path):
    """Two `mvlpt train` processes naming the same --compile-cache (the workflow's jobs share one):
    the first generates every graph, the second (another seed: the same shapes) loads them all from
    the cache; each result says how many it loaded and generated. Inductor, about 40 s in all."""
    cache = tmp_path / "torch-compile"
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}

    def train(seed):
        out = tmp_path / f"seed{seed}.json"
        cmd = [
            sys.executable,
            "-m",
            "mvlpt.cli",
            "train",
            "--method",
            "coop",
            "--task",
            A,
            "--shots",
            "2",
            "--seed",
            str(seed),
            "--pretrained",
            "synthetic",
            "--train-options",
            json.dumps({"epochs": 1, "warmup_epochs": 0}),
            "--train-options",
            json.dumps({"compile": "default"}),
            "--compile-cache",
            str(cache),
            "--output",
            f"{A}={out}",
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        result = json.loads(out.read_text())
        assert result["epochs"] == 1 and result["compile"]["mode"] == "default"  # both --train-options were read
        return result["compile"], res.stderr

    first, err = train(1)
    assert first["cache_hits"] == 0 and first["cache_misses"] >= 2, first  # text tower with and without grad
    assert f"from the cache {cache}" in err and any(cache.iterdir())
    second, _ = train(2)
    assert second["cache_hits"] == first["cache_misses"] and second["cache_misses"] == 0, (first, second)
    assert second["graphs"] == first["graphs"]

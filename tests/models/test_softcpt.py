"""SoftCPT (mvlpt/models/prompts/softcpt.py): exactness against CoOp and open_clip's own text encoder,
gradients, a learning test on two offline tasks, checkpoints across task lists, stacked seeds and
the ``tasks`` argument's errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mvlpt.errors import MvlptError
from mvlpt.models.clip import load_clip
from mvlpt.models.prompts import build_prompt_learner, stacked_logits, stacked_text_features
from mvlpt.models.prompts.softcpt import MAX_TASK_TOKENS, fit_text, short_description
from mvlpt.models.prompts.text import phrase_embeddings, word_tokens
from mvlpt.tasks import get_task
from mvlpt.training.checkpoints import PROVENANCE, load_prompt, save_prompt

NAMES = ["circle", "square", "triangle", "red", "green"]
TASKS = [("shapes", 3), ("shape-colours", 2)]
SLICES = [slice(0, 3), slice(3, 5)]


@pytest.fixture(autouse=True)
def _one_thread():  # a shared 2-core machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def softcpt(clip, options=None, tasks=TASKS, names=NAMES, seed=0):
    return build_prompt_learner("softcpt", clip, names, options or {}, generator=torch.Generator().manual_seed(seed), tasks=tasks)


def _images(clip, n, seed=0):
    return torch.randint(
        0, 256, (n, 3, clip.image_size, clip.image_size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


# ------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_fixed_meta_output_is_coop_with_that_context(tiny_clip, position):
    """Meta weight 0, bias c: every task's context is c, and SoftCPT's logits are CoOp's with ctx = c."""
    soft = softcpt(tiny_clip, {"n_ctx": 4, "position": position, "meta_bias": True})
    coop = build_prompt_learner("coop", tiny_clip, NAMES, {"n_ctx": 4, "position": position})
    c = torch.randn(4, tiny_clip.model.token_embedding.weight.shape[1], generator=torch.Generator().manual_seed(7)) * 0.5
    with torch.no_grad():
        soft.meta.weight.zero_()
        soft.meta.bias.copy_(c.flatten())
        coop.ctx.copy_(c)
    x = _images(tiny_clip, 6)
    with torch.no_grad():
        got, want = soft.logits(images=x), coop.logits(images=x)
    for s in SLICES:  # every task (CoOp's pass shares the prompts' common prefix, SoftCPT's cannot: float tolerance)
        torch.testing.assert_close(got[:, s], want[:, s], rtol=1e-5, atol=1e-5)
    # the comparison can fail: a non-zero meta weight makes the context depend on the task
    with torch.no_grad():
        soft.meta.weight.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
        ctx = soft.current_prompts()["text"]
        moved = soft.logits(images=x)
    assert ctx.shape == (len(NAMES), 4, c.shape[1])
    assert torch.equal(ctx[0], ctx[1]) and torch.equal(ctx[1], ctx[2]) and torch.equal(ctx[3], ctx[4])  # one ctx per task
    assert not torch.allclose(ctx[0], ctx[3], atol=1e-3)  # and tasks differ
    assert not torch.allclose(moved, want, atol=1e-3)


def test_zero_meta_weight_without_bias_is_coop_with_zero_context(tiny_clip):
    soft = softcpt(tiny_clip, {"n_ctx": 3})
    assert soft.meta.bias is None  # the reference's "lin" generator has no bias
    coop = build_prompt_learner("coop", tiny_clip, NAMES, {"n_ctx": 3, "position": "end"})
    with torch.no_grad():
        soft.meta.weight.zero_()
        coop.ctx.zero_()
        assert not soft.current_prompts()["text"].any()
        x = _images(tiny_clip, 4)
        torch.testing.assert_close(soft.logits(images=x), coop.logits(images=x), rtol=1e-5, atol=1e-5)  # shared prefix in CoOp


def test_task_features_equal_encode_text_of_the_task_text(tiny_clip):
    """No task context: the task features are open_clip's ``encode_text`` of "<task text>."."""
    soft = softcpt(tiny_clip, {"n_task_ctx": 0})
    assert soft.task_texts == [short_description(t, get_task(t).description) for t, _ in TASKS]
    assert soft.task_texts[0] == "shapes: Which shape is drawn"
    texts = [f"{t}." for t in soft.task_texts]
    with torch.no_grad():
        torch.testing.assert_close(soft.task_features(), tiny_clip.encode_texts(texts), rtol=0, atol=1e-5)
        raw = tiny_clip.model.encode_text(tiny_clip.tokenize(texts)).float()
        torch.testing.assert_close(soft.task_features(normalized=False), raw, rtol=0, atol=1e-5)


def test_task_context_is_put_before_the_task_text(tiny_clip):
    """With a task context equal to the token embeddings of "a photo of", the task features are
    ``encode_text("a photo of <task text>.")``: the learned vectors sit where those words would."""
    soft = softcpt(tiny_clip, {"n_task_ctx": 3}, tasks=TASKS, names=NAMES)
    with torch.no_grad():
        soft.task_ctx.copy_(phrase_embeddings(tiny_clip, "a photo of"))
        want = tiny_clip.encode_texts([f"a photo of {t}." for t in soft.task_texts])
        torch.testing.assert_close(soft.task_features(), want, rtol=0, atol=1e-5)
        soft.task_ctx.add_(torch.randn(soft.task_ctx.shape, generator=torch.Generator().manual_seed(2)) * 0.5)  # can fail
        assert not torch.allclose(soft.task_features(), want, atol=1e-3)


def test_descriptions_override_and_long_texts_are_cut_to_whole_words(tiny_clip):
    soft = softcpt(tiny_clip, {"n_task_ctx": 0, "descriptions": {"shapes": "drawings of simple shapes."}})
    assert soft.task_texts[0] == "drawings of simple shapes"  # the override, its closing "." is the prompt's
    assert soft.options()["descriptions"] == {"shapes": "drawings of simple shapes."}
    with torch.no_grad():
        torch.testing.assert_close(
            soft.task_features()[0], tiny_clip.encode_texts(["drawings of simple shapes."])[0], rtol=0, atol=1e-5
        )
    tok = tiny_clip.tokenizer
    long = " ".join(f"word{i}" for i in range(60))
    cut = softcpt(tiny_clip, {"descriptions": {"shapes": long}}).task_texts[0]
    assert long.startswith(cut + " ") and len(word_tokens(tok, cut)) <= MAX_TASK_TOKENS
    assert len(word_tokens(tok, cut + " word99")) > MAX_TASK_TOKENS  # as long as fits, not shorter
    assert fit_text(tok, "orange cat, sleeping", 2, "t") == "orange cat"  # trailing punctuation dropped
    with pytest.raises(MvlptError, match="does not fit the model's context length"):
        fit_text(tok, "supercalifragilistic", 1, "t")


# ------------------------------------------------------------------------------ what learns
def test_gradients_reach_task_context_and_meta_network_only(tiny_clip):
    soft = softcpt(tiny_clip, {"n_ctx": 2, "meta_bias": True})
    logits = soft.logits(images=_images(tiny_clip, 4))
    F.cross_entropy(logits, torch.tensor([0, 1, 3, 4])).backward()
    assert set(dict(soft.named_parameters())) == {"task_ctx", "meta.weight", "meta.bias"}
    for name, p in soft.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None and not p.requires_grad for p in tiny_clip.model.parameters())
    assert set(soft.state_dict()) == {"task_ctx", "meta.weight", "meta.bias"}  # CLIP stays out of checkpoints


def test_task_features_run_the_cast_once_tower_under_autocast():
    """Under bf16 autocast the task prompts go through the cast-once tower, and that computes what
    the float32 tower under autocast computes (logits and gradients bit for bit)."""
    clip = load_clip("mvlpt-tiny", "synthetic", device="cpu")
    soft = softcpt(clip, {"n_ctx": 2})
    x = [_images(clip, 3)]

    def forward():
        soft.zero_grad(set_to_none=True)
        logits = stacked_logits([soft], images=x, autocast=torch.bfloat16)[0]
        logits.square().sum().backward()
        return logits.detach(), [p.grad.clone() for p in soft.parameters()]

    plain = forward()
    clip.cast_frozen(torch.bfloat16)
    asked, tower_model = [], clip.tower_model
    clip.tower_model = lambda dtype: (asked.append(dtype), tower_model(dtype))[1]
    cast = forward()
    assert asked.count(torch.bfloat16) >= 2  # the task prompts' pass and the class prompts' pass
    assert torch.equal(plain[0], cast[0]) and all(torch.equal(a, b) for a, b in zip(plain[1], cast[1]))
    with torch.no_grad():
        assert not torch.equal(soft.logits(images=x[0]), cast[0])  # and bf16 is not float32


# ------------------------------------------------------------------------------ learning
LEARN_TASKS = ("shapes", "glyph-letters")  # 6 + 8 classes; untrained ~0.45 mean accuracy, trained ~0.65


def _task_data(clip, shots=8):
    data = []
    for name in LEARN_TASKS:
        task = get_task(name)
        out = {}
        for split in ("train", "test"):
            s = task.load(split)
            idx = np.arange(len(s))
            if split == "train":
                rng = np.random.default_rng(0)
                idx = np.concatenate(
                    [rng.choice(np.flatnonzero(s.labels == c), shots, replace=False) for c in range(task.num_classes)]
                )
            x = torch.from_numpy(np.ascontiguousarray(s.images[idx])).permute(0, 3, 1, 2)
            out[split] = (clip.encode_images(clip.normalize(x)), torch.as_tensor(s.labels[idx]))
        data.append((task, out))
    return data


def test_softcpt_learns_on_two_offline_tasks():
    """Full-batch SGD on the union of two tasks with a per-task softmax (cached image features, as
    the training loop does for methods with a frozen image tower): the training loss falls clearly
    and the test accuracy rises, averaged over three seeds; with lr 0 nothing changes."""
    clip = load_clip("mvlpt-tiny", "synthetic", device="cpu")
    data = _task_data(clip)
    names = [c for task, _ in data for c in task.classnames]
    tasks = [(task.name, task.num_classes) for task, _ in data]
    bounds = np.cumsum([0] + [n for _, n in tasks])

    def evaluate(learner, split):
        text = learner.text_features()
        loss, acc = 0.0, []
        for k, (_, d) in enumerate(data):
            feats, y = d[split]
            logits = learner.logits(feats=feats, text=text)[:, bounds[k] : bounds[k + 1]]  # per-task head
            loss = loss + F.cross_entropy(logits, y)
            acc.append((logits.argmax(1) == y).float().mean().item())
        return loss / len(data), float(np.mean(acc))

    def run(seed, lr, steps=40):
        learner = softcpt(clip, tasks=tasks, names=names, seed=seed)
        opt = torch.optim.SGD(learner.parameters(), lr=lr, momentum=0.9)
        with torch.no_grad():
            before = evaluate(learner, "train")[0].item(), evaluate(learner, "test")[1]
        for _ in range(steps):
            loss, _ = evaluate(learner, "train")
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            after = evaluate(learner, "train")[0].item(), evaluate(learner, "test")[1]
        return before, after

    runs = np.array([run(seed, 0.02) for seed in (1, 2, 3)])  # (seed, before/after, loss/acc)
    (loss0, acc0), (loss1, acc1) = runs.mean(0)
    assert loss1 < 0.6 * loss0, runs.tolist()
    assert acc1 > acc0 + 0.1, runs.tolist()
    (l0, a0), (l1, a1) = run(1, 0.0, steps=3)
    assert l0 == l1 and a0 == a1


# ------------------------------------------------------------------------------ checkpoints, stacks
def _provenance(clip, tasks):
    prov = {k: None for k in PROVENANCE}
    prov.update(
        task=tasks[0],
        tasks=list(tasks),
        seed=1,
        shots=4,
        model=clip.name,
        pretrained=clip.pretrained,
        init_seed=clip.init_seed,
        splits={},
        best_epoch=0,
        mvlpt_version="test",
    )
    return prov


def test_checkpoint_round_trip_and_a_prompt_meets_a_new_task(tiny_clip, tmp_path):
    source = softcpt(tiny_clip, {"n_ctx": 4, "meta_bias": True}, seed=3)
    path = tmp_path / "softcpt.safetensors"
    save_prompt(source, path, _provenance(tiny_clip, ["shapes", "shape-colours"]))
    again = softcpt(tiny_clip, {"n_ctx": 4, "meta_bias": True}, seed=4)
    assert not torch.equal(again.task_ctx, source.task_ctx)
    load_prompt(again, path)
    for key, value in source.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    x = _images(tiny_clip, 3)
    with torch.no_grad():
        assert torch.equal(again.logits(images=x), source.logits(images=x))
    # a learner for another task (other classes, another count) takes the same parameters
    orientation = get_task("orientation")
    target = softcpt(
        tiny_clip,
        {"n_ctx": 4, "meta_bias": True},
        tasks=[("orientation", orientation.num_classes)],
        names=list(orientation.classnames),
        seed=5,
    )
    load_prompt(target, path)
    assert torch.equal(target.meta.weight, source.meta.weight) and torch.equal(target.task_ctx, source.task_ctx)
    with torch.no_grad():  # the same meta network gives the new task its own context
        assert not torch.allclose(target.task_contexts()[0], source.task_contexts()[0], atol=1e-4)
    # what changes results is checked: other descriptions, other shapes
    other = softcpt(tiny_clip, {"n_ctx": 4, "meta_bias": True, "descriptions": {"shapes": "drawn shapes"}})
    with pytest.raises(MvlptError, match="options"):
        load_prompt(other, path)
    with pytest.raises(MvlptError, match="shape"):
        load_prompt(softcpt(tiny_clip, {"n_ctx": 2, "meta_bias": True}), path)


def test_stacked_seeds_equal_each_alone(tiny_clip):
    learners = [softcpt(tiny_clip, {"n_ctx": 2}, seed=s) for s in (1, 2)]
    images = [_images(tiny_clip, 3, seed=1), _images(tiny_clip, 2, seed=2)]
    with torch.no_grad():
        text = stacked_text_features(learners)
        stacked = stacked_logits(learners, images=images)
        alone = [lr.logits(images=x) for lr, x in zip(learners, images)]
        same = stacked_logits(learners, images=[images[0], images[0]])
    for k in range(2):
        torch.testing.assert_close(text[k], learners[k].text_features(), rtol=0, atol=1e-6)
        torch.testing.assert_close(stacked[k], alone[k], rtol=0, atol=1e-5)
    assert not torch.allclose(same[0], same[1], atol=1e-4)  # the seeds really differ
    # gradients stay with their own learner
    stacked_logits(learners, images=images)[0].sum().backward()
    assert learners[0].meta.weight.grad.abs().sum() > 0 and not learners[1].meta.weight.grad.any()


# ------------------------------------------------------------------------------ the tasks argument
@pytest.mark.parametrize(
    "tasks,match",
    [
        (None, "needs the task of every class"),
        ([("shapes", 3)], "sum to the 5 class names"),
        ([("shapes", 3), ("shapes", 2)], "distinct tasks"),
        ([("shapes", 5), ("shape-colours", 0)], "at least one class"),
        (["shapes"], "tasks must be"),
        ([], "sum to the 5 class names"),
    ],
)
def test_missing_or_ill_formed_tasks_give_one_sentence(tiny_clip, tasks, match):
    with pytest.raises(MvlptError, match=match) as err:
        softcpt(tiny_clip, tasks=tasks)
    msg = str(err.value)
    assert "\n" not in msg and msg.endswith(".") and msg.count(". ") == 0, msg


def test_only_task_conditioned_methods_see_tasks(tiny_clip):
    coop = build_prompt_learner("coop", tiny_clip, NAMES, {"n_ctx": 2}, tasks=TASKS)  # CoOp never sees it
    assert coop.options() == {"n_ctx": 2, "position": "middle", "csc": False}
    with pytest.raises(MvlptError, match="'softcpt' needs the task of every class"):
        build_prompt_learner("softcpt", tiny_clip, NAMES)
    with pytest.raises(MvlptError, match="unknown task 'no-such-task'"):
        softcpt(tiny_clip, tasks=[("no-such-task", 5)])
    # parameters do not depend on the task list
    a, b = softcpt(tiny_clip), softcpt(tiny_clip, tasks=[("orientation", 5)])
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert a.options() == {"n_ctx": 16, "n_task_ctx": 4, "position": "end", "meta_bias": False, "descriptions": None}

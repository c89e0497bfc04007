"""Exactness of the prompt methods against open_clip's own encoders; the method registry; the one
stacked forward pass."""

import textwrap

import pytest
import torch

from mvlpt.errors import MvlptError
from mvlpt.models.prompts import (
    PromptLearner,
    build_prompt_learner,
    stacked_image_features,
    stacked_logits,
    stacked_text_features,
)
from mvlpt.models.prompts.text import TokenLayout, encode_prompted_text, phrase_embeddings
from mvlpt.models.prompts.vision import encode_prompted_image
from mvlpt.study import vocabulary

NAMES = ["cat", "pickup truck", "sea", "maple tree", "seven"]


def test_coop_with_phrase_context_equals_encode_text(tiny_clip):
    coop = build_prompt_learner("coop", tiny_clip, NAMES, {"init": "a photo of a", "position": "end"})
    expected = tiny_clip.encode_texts([f"a photo of a {n}." for n in NAMES])
    got = coop.text_features()
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    # and a different context really changes the features (the test can fail). A constant shift
    # would not: every block starts with a LayerNorm, which removes it.
    with torch.no_grad():
        coop.ctx.add_(torch.randn_like(coop.ctx) * 0.5)
    assert not torch.allclose(coop.text_features(), expected, atol=1e-3)


def test_cut_text_sequence_equals_full_77_tokens(tiny_clip):
    ctx = torch.randn(16, tiny_clip.model.token_embedding.weight.shape[1]) * 0.02
    for position in ("end", "middle", "front"):
        cut = TokenLayout(tiny_clip, NAMES, 16, position, cut=True)
        full = TokenLayout(tiny_clip, NAMES, 16, position, cut=False)
        assert cut.tokens.shape[1] < full.tokens.shape[1] == 77
        a = encode_prompted_text(tiny_clip.model, cut.fill(ctx), cut.eot_pos)
        b = encode_prompted_text(tiny_clip.model, full.fill(ctx), full.eot_pos)
        assert torch.allclose(a, b, atol=1e-5), (position, (a - b).abs().max())


def _plain_text_pass(monkeypatch):
    """Make :func:`stacked_text_features` run open_clip's text transformer whole, every row of every block."""
    from mvlpt.models.prompts import blocks

    monkeypatch.setattr(blocks, "applies", lambda transformer: False)


@pytest.mark.parametrize(
    "method,options,prefix",
    [
        ("coop", {"position": "end"}, 1 + 16),
        ("coop", {"position": "middle"}, 1 + 8),
        ("coop", {"position": "front"}, 1),
        ("coop", {"n_ctx": 4, "csc": True}, 0),
        ("upt", {"position": "middle"}, 1 + 2),
        ("upt", {"position": "end"}, 1 + 4),
    ],
)
def test_shared_prefix_equals_the_plain_text_pass(tiny_clip, monkeypatch, method, options, prefix):
    """[SOS] and the context before the class name run once per prompt set, and the last block computes
    the [EOS] rows alone: class features and prompt gradients equal open_clip's whole text transformer
    on every class's prompt, for a stack of three sets (a wrong set's prefix, or a prefix or [EOS]
    attended to wrongly, changes both)."""
    names = NAMES + ["x", "x ray"]  # "x" is also the filler token of the context positions
    learners = [
        build_prompt_learner(method, tiny_clip, names, options, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3)
    ]
    assert learners[0].shared_text_prefix(learners[0].current_prompts()) == prefix
    weights = torch.randn(3 * len(names), tiny_clip.model.text_projection.shape[1], generator=torch.Generator().manual_seed(0))

    def features_and_grads():
        for lr in learners:
            lr.zero_grad(set_to_none=True)
        feats = torch.cat(stacked_text_features(learners))
        (feats * weights).sum().backward()  # not feats.square().sum(): unit vectors would make that constant
        grads = [p.grad.clone() for lr in learners for p in lr.parameters() if p.grad is not None]  # UPT: the text side's
        assert grads and any(g.abs().max() > 0 for g in grads)
        return feats.detach(), grads

    shared, shared_grads = features_and_grads()
    with monkeypatch.context() as m:
        _plain_text_pass(m)
        plain, plain_grads = features_and_grads()
    assert torch.allclose(shared, plain, atol=1e-6), (shared - plain).abs().max()
    for a, b in zip(shared_grads, plain_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max()), (method, options, (a - b).abs().max())


def test_every_method_shares_only_what_is_shared(tiny_clip, toy_method):
    """Each text-learning method's claimed shared prefix really is the same in every class's prompt
    embeddings (a method that builds its embeddings another way must say so), and stops before [EOS]."""
    claimed = {}
    for name, entry in vocabulary.METHODS.items():
        if not entry.learns_text:
            continue
        tasks = [("shapes", 2), ("shape-colours", len(NAMES) - 2)] if entry.task_conditioned else None
        for options in ({}, {"position": "end"}) if name != "suffix" else ({},):
            lr = build_prompt_learner(name, tiny_clip, NAMES, options, tasks=tasks, generator=torch.Generator().manual_seed(0))
            if entry.image_conditioned:  # one set of class prompts per image (CoCoOp): the prefix is shared within each
                feats = torch.nn.functional.normalize(torch.randn(2, tiny_clip.model.visual.output_dim), dim=-1)
                prompts = lr.current_prompts(feats)
                sets = lr.text_embeddings(prompts).unflatten(0, (2, len(NAMES)))
                assert not torch.equal(sets[0], sets[1]), name
            else:
                prompts = lr.current_prompts()
                sets = lr.text_embeddings(prompts)[None]
            P = lr.shared_text_prefix(prompts)
            for emb in sets:
                assert torch.equal(emb[:, :P], emb[:1, :P].expand(len(NAMES), -1, -1)), (name, options)
            assert P < int(lr.layout.eot_pos.min()), (name, options)
            claimed[(name, *options.values())] = P
    # a context position is never taken for a token that happens to be the filler: "x" is both
    layout = TokenLayout(tiny_clip, ["x", "x x"], 16, "middle")
    emb = layout.fill(torch.randn(16, tiny_clip.model.token_embedding.weight.shape[1]))
    assert layout.shared_prefix == 1 + 8 + 1 and torch.equal(emb[0, :10], emb[1, :10]) and not torch.equal(emb[0, 10], emb[1, 10])
    assert claimed[("coop", "end")] == 17 and claimed[("softcpt",)] == 0  # a task context per class


def test_shared_prefix_applies_only_to_a_causal_text_tower(tiny_clip, monkeypatch):
    """Without the causal mask every position sees the class name: the plain pass runs instead."""
    import copy

    layout = TokenLayout(tiny_clip, NAMES, 16, "end")
    ctx = torch.randn(16, tiny_clip.model.token_embedding.weight.shape[1]) * 0.02
    bidirectional = copy.deepcopy(tiny_clip.model)
    bidirectional.attn_mask = None
    x = layout.fill(ctx)
    a = encode_prompted_text(bidirectional, x, layout.eot_pos, shared_prefix=layout.shared_prefix)
    b = encode_prompted_text(bidirectional, x, layout.eot_pos)
    assert torch.equal(a, b)
    causal = encode_prompted_text(tiny_clip.model, x, layout.eot_pos, shared_prefix=layout.shared_prefix)
    assert not torch.allclose(a, causal, atol=1e-3)


@pytest.mark.parametrize(
    "method,options,pool",
    [
        ("vpt", {"n_ctx": 3}, "tok"),
        ("vpt", {"n_ctx": 3, "deep": False}, "tok"),
        ("vpt", {"n_ctx": 0}, "tok"),
        ("upt", {"n_ctx": 2}, "tok"),
        ("vpt", {"n_ctx": 3}, "avg"),
    ],
)
def test_image_tower_computes_only_the_rows_it_uses(tiny_clip, monkeypatch, method, options, pool):
    """Dropping the rows whose outputs are not used (prompt rows the next layer replaces, every row but
    [CLS] after the last block) equals running every block on every row: features and prompt
    gradients, for a stack of three prompt sets."""
    import copy

    from mvlpt.models.prompts import blocks

    clip = copy.copy(tiny_clip)
    clip.model = copy.deepcopy(tiny_clip.model)
    clip.model.visual.pool_type = pool  # "avg": every patch row is read, only the prompt rows may go
    learners = [build_prompt_learner(method, clip, NAMES, options, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3)]
    images = [_images(clip, n, seed=n) for n in (3, 1, 2)]
    weights = torch.randn(6, clip.model.text_projection.shape[1], generator=torch.Generator().manual_seed(0))

    def features_and_grads():
        for lr in learners:
            lr.zero_grad(set_to_none=True)
        feats = torch.cat(stacked_image_features(learners, images))
        if feats.requires_grad:
            (feats * weights).sum().backward()
        return feats.detach(), [p.grad.clone() for lr in learners for p in lr.parameters() if p.grad is not None]

    fast, fast_grads = features_and_grads()
    with monkeypatch.context() as m:
        m.setattr(blocks, "applies", lambda transformer: False)  # every block on every row
        whole, whole_grads = features_and_grads()
    assert torch.allclose(fast, whole, atol=1e-5), (fast - whole).abs().max()
    assert len(fast_grads) == len(whole_grads) and (options["n_ctx"] == 0 or fast_grads)
    for a, b in zip(fast_grads, whole_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max()), (method, options, (a - b).abs().max())


def test_class_token_positions(tiny_clip):
    tok = tiny_clip.tokenizer
    name = tok(["pickup truck"])[0]
    name_ids = name[1 : int(name.argmax())].tolist()
    for position, first in (("end", 1 + 16), ("front", 1), ("middle", 1 + 8)):
        layout = TokenLayout(tiny_clip, ["pickup truck"], 16, position)
        assert layout.tokens[0, first : first + len(name_ids)].tolist() == name_ids
        assert set(layout.ctx_pos[0].tolist()).isdisjoint(range(first, first + len(name_ids)))


def test_class_specific_context_differs_per_class(tiny_clip):
    coop = build_prompt_learner("coop", tiny_clip, NAMES, {"n_ctx": 4, "csc": True})
    assert coop.ctx.shape == (len(NAMES), 4, tiny_clip.model.token_embedding.weight.shape[1])
    assert coop.text_features().shape == (len(NAMES), tiny_clip.model.text_projection.shape[1])


def test_vpt_with_zero_tokens_equals_encode_image(tiny_clip):
    x = torch.randn(3, 3, tiny_clip.image_size, tiny_clip.image_size)
    vpt = build_prompt_learner("vpt", tiny_clip, NAMES, {"n_ctx": 0})
    assert torch.allclose(vpt.image_features(x), tiny_clip.encode_images(x), atol=1e-6)
    plain = tiny_clip.model.encode_image(x)
    assert torch.allclose(encode_prompted_image(tiny_clip.model.visual, x, None), plain, atol=1e-6)


def _images(clip, n, seed=0):
    return torch.randint(
        0, 256, (n, 3, clip.image_size, clip.image_size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def test_prompted_image_tower_equals_open_clip_forward_with_prompts_put_in(tiny_clip, monkeypatch):
    """What vision.py takes from open_clip's private ``_embeds`` / ``_pool`` still composes as open_clip's
    own ``VisionTransformer.forward`` does: shallow prompts inserted after [CLS] by wrapping
    ``_embeds``, deep prompts replaced by forward pre-hooks on the blocks, through open_clip's
    ``forward`` (token pooling: the prompt positions do not reach the pooled [CLS] feature)."""
    visual = tiny_clip.model.visual
    assert visual.pool_type == "tok" and visual.attn_pool is None, "the check below assumes [CLS] pooling"
    x = tiny_clip.normalize(_images(tiny_clip, 3))
    width, layers = visual.conv1.weight.shape[0], len(visual.transformer.resblocks)
    p = torch.randn(layers, 4, width, generator=torch.Generator().manual_seed(1))
    embeds = visual._embeds
    monkeypatch.setattr(
        visual, "_embeds", lambda im: (lambda e: torch.cat([e[:, :1], p[0].expand(len(e), -1, -1), e[:, 1:]], 1))(embeds(im))
    )
    with torch.no_grad():
        shallow_ref = visual(x)
        hooks = [
            block.register_forward_pre_hook(
                lambda mod, args, i=i: (torch.cat([args[0][:, :1], p[i].expand(len(args[0]), -1, -1), args[0][:, 5:]], 1),)
            )
            for i, block in enumerate(visual.transformer.resblocks)
            if i > 0
        ]
        try:
            deep_ref = visual(x)
        finally:
            for h in hooks:
                h.remove()
    monkeypatch.undo()
    with torch.no_grad():
        shallow = encode_prompted_image(visual, x, p[:1], deep=False)
        deep = encode_prompted_image(visual, x, p, deep=True)
    assert torch.allclose(shallow, shallow_ref, atol=1e-6), (shallow - shallow_ref).abs().max()
    assert torch.allclose(deep, deep_ref, atol=1e-6), (deep - deep_ref).abs().max()
    assert not torch.allclose(shallow, deep, atol=1e-4)  # the later layers' prompts matter


def test_methods_come_from_the_study_registry(tiny_clip):
    for name, entry in vocabulary.METHODS.items():
        cls = entry.learner_class()
        assert issubclass(cls, PromptLearner) and cls.method == name, name
        # what learns is stated once, in the registry: no class repeats it
        assert "learns_text" not in vars(cls) and "learns_image" not in vars(cls), name
        tasks = [("shapes", 2), ("shape-colours", len(NAMES) - 2)] if entry.task_conditioned else None  # SoftCPT
        learner = build_prompt_learner(name, tiny_clip, NAMES, tasks=tasks)
        assert (learner.learns_text, learner.learns_image) == (entry.learns_text, entry.learns_image)
    with pytest.raises(MvlptError, match="unknown prompt method 'copo'"):
        build_prompt_learner("copo", tiny_clip, NAMES)
    with pytest.raises(MvlptError, match="bad options for method 'coop'"):
        build_prompt_learner("coop", tiny_clip, NAMES, {"n_tokens": 4})


TOY_METHOD = textwrap.dedent('''
    """A toy method: a learned context after the class name, frozen image side."""
    import torch
    from torch import nn

    from mvlpt.models.prompts.base import PromptLearner
    from mvlpt.models.prompts.text import TokenLayout


    class Suffix(PromptLearner):
        method = "suffix"

        def __init__(self, clip, classnames, n_ctx=2, generator=None):
            super().__init__(clip, classnames)
            width = clip.model.token_embedding.weight.shape[1]
            self.ctx = nn.Parameter(torch.empty(n_ctx, width).normal_(0, 0.02, generator=generator))
            self.layout = TokenLayout(clip, classnames, n_ctx, "front")
            self.n_ctx = n_ctx

        def options(self):
            return {"n_ctx": self.n_ctx}

        def current_prompts(self):
            return {"text": self.ctx, "visual": None}
''')


@pytest.fixture
def toy_method(tmp_path, monkeypatch):
    """A method added the documented way: its module and one registry line."""
    (tmp_path / "toy_suffix_method.py").write_text(TOY_METHOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(
        vocabulary.METHODS,
        "suffix",
        vocabulary.Method("suffix", "toy_suffix_method:Suffix", learns_text=True, learns_image=False, label="Suffix"),
    )
    return "suffix"


def test_a_method_is_its_module_and_one_registry_line(tiny_clip, toy_method):
    gen = torch.Generator().manual_seed(0)
    a, b = (build_prompt_learner(toy_method, tiny_clip, NAMES, {"n_ctx": 3}, generator=gen) for _ in range(2))
    assert a.learns_text and not a.learns_image and a.ctx.shape[0] == 3
    x = _images(tiny_clip, 4)
    logits = stacked_logits([a, b], images=[x, x[:2]])
    assert [tuple(lg.shape) for lg in logits] == [(4, len(NAMES)), (2, len(NAMES))]
    assert not torch.allclose(logits[0][:2], logits[1])  # two prompt sets, two results
    logits[0].sum().backward()
    assert a.ctx.grad is not None and a.ctx.grad.abs().sum() > 0 and not b.ctx.grad.any()  # sets stay apart


@pytest.mark.parametrize("method", ["coop", "vpt", "upt"])
def test_stacked_forward_equals_one_set_at_a_time(tiny_clip, method):
    """K prompt sets in one pass of each tower = each set alone (the training loop relies on it)."""
    learners = [
        build_prompt_learner(method, tiny_clip, NAMES, {"n_ctx": 2}, generator=torch.Generator().manual_seed(s))
        for s in (1, 2, 3)
    ]
    images = [_images(tiny_clip, n, seed=n) for n in (3, 1, 2)]
    with torch.no_grad():
        text = stacked_text_features(learners)
        stacked = stacked_logits(learners, images=images)
        with_text = stacked_logits(learners, images=images, text=text)
        alone = [lr.logits(images=x) for lr, x in zip(learners, images)]
        alone_text = [lr.text_features() for lr in learners]
        feats = [lr.image_features(x) for lr, x in zip(learners, images)]
        from_feats = stacked_logits(learners, feats=feats)
    for k in range(3):
        assert torch.allclose(text[k], alone_text[k], atol=1e-6)
        assert torch.allclose(stacked[k], alone[k], atol=1e-5), (method, k, (stacked[k] - alone[k]).abs().max())
        assert torch.equal(with_text[k], stacked[k])
        assert torch.allclose(from_feats[k], alone[k], atol=1e-5)
    # the sets really differ (so the equalities above can fail): same image, other seed, other logits
    with torch.no_grad():
        same = stacked_logits(learners[:2], images=[images[0], images[0]])
    assert not torch.allclose(same[0], same[1], atol=1e-4)


def test_a_stack_must_share_method_and_options(tiny_clip):
    a = build_prompt_learner("coop", tiny_clip, NAMES, {"n_ctx": 2})
    b = build_prompt_learner("coop", tiny_clip, NAMES, {"n_ctx": 3})
    with pytest.raises(ValueError, match="must share"):
        stacked_text_features([a, b])
    with pytest.raises(ValueError, match="either images or cached"):
        stacked_logits([a])


def test_vpt_deep_replaces_prompts_per_layer_and_shallow_does_not(tiny_clip):
    x = torch.randn(2, 3, tiny_clip.image_size, tiny_clip.image_size)
    gen = torch.Generator().manual_seed(0)
    deep = build_prompt_learner("vpt", tiny_clip, NAMES, {"n_ctx": 4}, generator=gen)
    layers = len(tiny_clip.model.visual.transformer.resblocks)
    assert deep.prompts.shape[:2] == (layers, 4)
    before = deep.image_features(x)
    with torch.no_grad():
        deep.prompts[1:].add_(torch.randn_like(deep.prompts[1:]))  # only the later layers' prompts
    assert not torch.allclose(before, deep.image_features(x), atol=1e-4)
    shallow = build_prompt_learner("vpt", tiny_clip, NAMES, {"n_ctx": 4, "deep": False})
    assert shallow.prompts.shape[0] == 1


def test_vpt_init_range(tiny_clip):
    vpt = build_prompt_learner("vpt", tiny_clip, NAMES)
    patch, width = tiny_clip.model.visual.conv1.weight.shape[-1], tiny_clip.model.visual.conv1.weight.shape[0]
    v = (6 / (3 * patch * patch + width)) ** 0.5
    assert vpt.prompts.abs().max() <= v and vpt.prompts.abs().max() > 0.9 * v


def test_upt_mixing_modes_differ_and_per_token_does_not_mix(tiny_clip):
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    mix = build_prompt_learner("upt", tiny_clip, NAMES, {"mix": "all"}, generator=gen())
    per = build_prompt_learner("upt", tiny_clip, NAMES, {"mix": "per_token"}, generator=gen())
    per.load_state_dict(mix.state_dict())
    t_mix, v_mix = mix.generate()
    t_per, v_per = per.generate()
    assert not torch.allclose(t_mix, t_per, atol=1e-5)
    # per-token: changing the visual parameters leaves the generated text context untouched
    with torch.no_grad():
        delta = torch.randn_like(per.visual_ctx)
        per.visual_ctx.add_(delta)
        mix.visual_ctx.add_(delta)
    assert torch.allclose(per.generate()[0], t_per, atol=1e-6)
    assert not torch.allclose(mix.generate()[0], t_mix, atol=1e-5)


@pytest.mark.slow
def test_parameter_counts_on_vit_b16():
    """The protocol's trainable parameter counts for ViT-B/16 (random weights: shapes only)."""
    from mvlpt.models.clip import load_clip

    clip = load_clip("ViT-B-16-quickgelu", None)
    count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    assert count(build_prompt_learner("coop", clip, NAMES, {"n_ctx": 16})) == 8192
    assert count(build_prompt_learner("vpt", clip, NAMES, {"n_ctx": 16})) == 147456
    upt = count(build_prompt_learner("upt", clip, NAMES, {"n_ctx": 4}))
    assert 560_000 < upt < 570_000, upt
    assert phrase_embeddings(clip, "a photo of a").shape == (4, 512)


def test_vpt_length_is_n_ctx_and_n_tokens_is_a_deprecated_alias(tiny_clip):
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    new = build_prompt_learner("vpt", tiny_clip, NAMES, {"n_ctx": 3}, generator=gen())
    with pytest.warns(FutureWarning, match="'n_tokens' is deprecated; call it 'n_ctx'"):
        old = build_prompt_learner("vpt", tiny_clip, NAMES, {"n_tokens": 3}, generator=gen())
    assert new.options() == old.options() == {"n_ctx": 3, "deep": True}
    assert torch.equal(new.prompts, old.prompts)
    with pytest.raises(MvlptError, match="both 'n_ctx' and its old name 'n_tokens'"):
        build_prompt_learner("vpt", tiny_clip, NAMES, {"n_tokens": 3, "n_ctx": 4})
    # options read back from an older file: renamed without a warning
    assert type(new).canonical_options({"n_tokens": 16, "deep": True}, warn=False) == {"n_ctx": 16, "deep": True}


def test_upt_uniform_visual_init_uses_vpts_range(tiny_clip):
    visual = tiny_clip.model.visual
    patch, width = visual.conv1.weight.shape[-1], visual.conv1.weight.shape[0]
    v = (6 / (3 * patch * patch + width)) ** 0.5
    uniform = build_prompt_learner(
        "upt", tiny_clip, NAMES, {"visual_init": "uniform"}, generator=torch.Generator().manual_seed(0)
    )
    normal = build_prompt_learner("upt", tiny_clip, NAMES, generator=torch.Generator().manual_seed(0))
    assert uniform.visual_ctx.abs().max() <= v and uniform.visual_ctx.abs().max() > 0.9 * v
    assert abs(uniform.visual_ctx.std() / (v / 3**0.5) - 1) < 0.1  # uniform(-v, v), not N(0, 0.02)
    assert abs(normal.visual_ctx.std() / 0.02 - 1) < 0.1  # the default is unchanged
    assert uniform.visual_ctx.shape == normal.visual_ctx.shape and uniform.options() == normal.options()
    with pytest.raises(MvlptError, match="visual_init must be one of normal, uniform"):
        build_prompt_learner("upt", tiny_clip, NAMES, {"visual_init": "xavier"})


def test_upt_class_token_in_the_middle(tiny_clip):
    tok = tiny_clip.tokenizer
    ids = tok(["pickup truck"])[0]
    name_ids = ids[1 : int(ids.argmax())].tolist()
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    middle = build_prompt_learner("upt", tiny_clip, ["pickup truck"], {"n_ctx": 4, "position": "middle"}, generator=gen())
    end = build_prompt_learner("upt", tiny_clip, ["pickup truck"], {"n_ctx": 4}, generator=gen())
    assert middle.layout.tokens[0, 3 : 3 + len(name_ids)].tolist() == name_ids  # [SOS] ctx ctx <name> ctx ctx
    assert middle.layout.ctx_pos[0].tolist() == [1, 2, 3 + len(name_ids), 4 + len(name_ids)]
    assert end.layout.ctx_pos[0].tolist() == [1, 2, 3, 4]
    assert middle.options()["position"] == "middle"
    # the generated context lands where the layout says
    text, _ = middle.generate()
    emb = middle.text_embeddings({"text": text})
    assert torch.equal(emb[0, middle.layout.ctx_pos[0]], text.to(emb.dtype))
    assert not torch.allclose(middle.text_features(), end.text_features(), atol=1e-4)

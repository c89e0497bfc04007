"""Exactness of the prompt methods against open_clip's own encoders."""

import pytest
import torch

from mvlpt.models.prompts import build_prompt_learner
from mvlpt.models.prompts.text import TokenLayout, encode_prompted_text, phrase_embeddings
from mvlpt.models.prompts.vision import encode_prompted_image

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
    vpt = build_prompt_learner("vpt", tiny_clip, NAMES, {"n_tokens": 0})
    assert torch.allclose(vpt.image_features(x), tiny_clip.encode_images(x), atol=1e-6)
    plain = tiny_clip.model.encode_image(x)
    assert torch.allclose(encode_prompted_image(tiny_clip.model.visual, x, None), plain, atol=1e-6)


def test_vpt_deep_replaces_prompts_per_layer_and_shallow_does_not(tiny_clip):
    x = torch.randn(2, 3, tiny_clip.image_size, tiny_clip.image_size)
    gen = torch.Generator().manual_seed(0)
    deep = build_prompt_learner("vpt", tiny_clip, NAMES, {"n_tokens": 4}, generator=gen)
    layers = len(tiny_clip.model.visual.transformer.resblocks)
    assert deep.prompts.shape[:2] == (layers, 4)
    before = deep.image_features(x)
    with torch.no_grad():
        deep.prompts[1:].add_(torch.randn_like(deep.prompts[1:]))  # only the later layers' prompts
    assert not torch.allclose(before, deep.image_features(x), atol=1e-4)
    shallow = build_prompt_learner("vpt", tiny_clip, NAMES, {"n_tokens": 4, "deep": False})
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
    assert count(build_prompt_learner("vpt", clip, NAMES, {"n_tokens": 16})) == 147456
    upt = count(build_prompt_learner("upt", clip, NAMES, {"n_ctx": 4}))
    assert 560_000 < upt < 570_000, upt
    assert phrase_embeddings(clip, "a photo of a").shape == (4, 512)

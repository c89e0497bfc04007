"""Contrastive pre-training of ``mvlpt-tiny`` on captioned synthetic images (offline, CPU, minutes).

A randomly initialised CLIP has collapsed features (cosine ~0.98 between any two images) that keep
little more than colour, so prompt tuning on it mostly measures noise. This script trains the tiny
model CLIP-style on freshly generated images of the offline suite's renderers (seeds disjoint from
the tasks' train/test streams; scikit-learn digits outside the tasks' train/test indices), each with
a caption naming its attributes ("a red star.", "a striped texture in blue and green.", "the
number seven."). The result is saved as fp16 safetensors; load it with
``load_clip("mvlpt-tiny", "<path>")``.

    python -m mvlpt.models.pretrain_tiny --out mvlpt/models/weights/mvlpt-tiny-synthetic.safetensors
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from mvlpt.tasks import synthetic

DIGIT_WORDS = synthetic.DIGITS
_SEED = 77_000  # pre-training streams: never equal to a task's (seed, split) stream


def _rng(k: int) -> np.random.Generator:
    return np.random.default_rng([_SEED, k])


def _pick(rng, options, n):
    return [options[i] for i in rng.integers(0, len(options), n)]


def make_corpus(n_per_family: int, chunk: int = 0) -> tuple[np.ndarray, list[str]]:
    """Images (N, 32, 32, 3) uint8 and one caption each, from the six renderers."""
    images, captions = [], []
    n = n_per_family
    # shapes: shape and colour
    rng = _rng(10 + chunk)
    shapes = rng.integers(0, len(synthetic.SHAPES), n)
    colours = rng.integers(0, len(synthetic.COLOURS), n)
    images.append(synthetic.shape_images(rng, shapes, colours))
    forms = ("a {c} {s}.", "a drawing of a {c} {s}.", "a {s}.", "something coloured {c}.", "a {c} shape.", "a {s} shape.")
    captions += [
        f.format(c=synthetic.COLOUR_NAMES[c], s=synthetic.SHAPES[s]) for f, s, c in zip(_pick(rng, forms, n), shapes, colours)
    ]
    # textures: kind and colours (named when they are palette colours)
    rng = _rng(20 + chunk)
    k = len(synthetic.COLOURS)
    kinds = rng.integers(0, len(synthetic.TEXTURES), n)
    pool = len(synthetic.TEXTURE_POOL)  # the palette colours first (k of them), then neutrals
    a = rng.integers(0, pool, n)
    b = (a + rng.integers(1, pool, n)) % pool
    plain = kinds == synthetic.TEXTURES.index("plain")
    b = np.where(plain, a, b)
    images.append(synthetic.texture_images(rng, kinds, a, b))
    for i in range(n):
        names = sorted({synthetic.COLOUR_NAMES[j] for j in (a[i], b[i]) if j < k})
        kind = synthetic.TEXTURES[kinds[i]]
        if names and rng.random() < 0.6:
            captions.append(f"a {kind} texture in {' and '.join(names)}.")
        else:
            captions.append(f"a {kind} pattern." if rng.random() < 0.5 else f"a {kind} texture.")
    # printed digits and letters
    rng = _rng(30 + chunk)
    labels = rng.integers(0, 10, n)
    images.append(synthetic.glyph_images(rng, tuple("0123456789"), labels))
    forms = ("the number {}.", "a printed digit {}.", 'a photo of the number: "{}".')
    captions += [f.format(DIGIT_WORDS[d]) for f, d in zip(_pick(rng, forms, n), labels)]
    rng = _rng(40 + chunk)
    labels = rng.integers(0, len(synthetic.LETTERS), n)
    images.append(synthetic.glyph_images(rng, synthetic.LETTERS, labels))
    forms = ('the letter "{}".', "a printed letter {}.", "the capital letter {}.")
    captions += [f.format(synthetic.LETTERS[d]) for f, d in zip(_pick(rng, forms, n), labels)]
    # handwritten digits not used by the sklearn-digits task's train/test splits
    rng = _rng(50 + chunk)
    free = synthetic.spare_sklearn_digits()
    idx = free[rng.integers(0, len(free), n)]
    labels, img = synthetic.sklearn_digit_images(rng, idx)
    images.append(img)
    forms = ("a handwritten digit {}.", "the number {}.", "a blurry scan of the number {}.")
    captions += [f.format(DIGIT_WORDS[d]) for f, d in zip(_pick(rng, forms, n), labels)]
    # oriented bars: the task's renderer on another stream, balanced classes
    labels, img = synthetic.orientation_images(_rng(60 + chunk), (n // 4,) * 4)
    images.append(img)
    forms = ("a {} line.", "a drawing of a {} bar.", "a {} stroke.")
    rng = _rng(70 + chunk)
    captions += [f.format(synthetic.ORIENTATIONS[o]) for f, o in zip(_pick(rng, forms, len(labels)), labels)]
    return np.concatenate(images), captions


def encode_text_cut(model, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's encode_text on sequences cut after the longest caption (causal: same result)."""
    from mvlpt.models.prompts.text import encode_prompted_text

    eot = tokens.argmax(dim=-1)
    L = int(eot.max()) + 1
    x = model.token_embedding(tokens[:, :L])
    return encode_prompted_text(model, x, eot)


def pretrain(
    steps: int = 1200, batch_size: int = 256, n_per_family: int = 3000, lr: float = 2e-3, init_seed: int = 0, log_every: int = 100
):
    from mvlpt.models.clip import load_clip

    clip = load_clip("mvlpt-tiny", init_seed=init_seed)
    model = clip.model
    model.train().requires_grad_(True)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))  # learnt from CLIP's 1/0.07-like start, clamped at 100
    images, captions = make_corpus(n_per_family)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    tok_all = clip.tokenize(captions)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}], lr=lr)
    gen = torch.Generator().manual_seed(init_seed)
    t0 = time.time()
    for step in range(steps):
        warm = min(1.0, (step + 1) / 100)
        for g in opt.param_groups:
            g["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(0, len(captions), (batch_size,), generator=gen)
        img = F.normalize(model.encode_image(clip.normalize(x_all[idx])), dim=-1)
        txt = F.normalize(encode_text_cut(model, tok_all[idx]), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.t()
        # captions repeat: every pair with the same caption is a positive
        same = (tok_all[idx].unsqueeze(1) == tok_all[idx].unsqueeze(0)).all(-1).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.log_softmax(0)).sum(0).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(
                f"step {step} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f} {time.time() - t0:.0f}s",
                flush=True,
            )
    model.eval().requires_grad_(False)
    return model


def save_fp16(model, path: str) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, path, metadata={"model": "mvlpt-tiny", "source": "mvlpt.models.pretrain_tiny"})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--per-family", type=int, default=3000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = pretrain(a.steps, a.batch_size, a.per_family, a.lr)
    save_fp16(model, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

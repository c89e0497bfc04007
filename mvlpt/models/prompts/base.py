"""What every prompt method provides, and the one forward pass of prompted CLIP.

A method turns its parameters into *prompts* (``current_prompts()``): a ``"text"`` context for the
text tower and/or ``"visual"`` prompt tokens for the image tower. The forward pass takes a *stack*
of learners of one method (one per seed) and runs all their prompt sets through one pass of each
frozen tower (:func:`stacked_text_features`, :func:`stacked_image_features`, :func:`stacked_logits`);
the training loop, evaluation, the predictors, the tests and the benchmark all call these.

The contract is :func:`stacked_logits`: given images (or cached image features), return each prompt
set's logits. A method whose class text depends on the image (``image_conditioned`` in its registry
entry: CoCoOp) gives, from ``current_prompts(image_features)``, one text context per image
(``(B, n, W)``) and its :meth:`PromptLearner.text_embeddings` turns them into ``B`` sets of class
prompts; :func:`stacked_logits` then runs every image's class prompts (each set's shared prefix once,
as for one context) and scores each image against its own class features
(:func:`stacked_conditioned_text_features`). Whoever evaluates many batches asks
:func:`stacked_text_features_once` for the class features of the whole pass: None for such a method.
The other methods' pass is unchanged by this (same operations in the same order). ``text_features`` /
``image_features`` / ``logits`` of a single learner are the same functions on a stack of one.
The towers themselves are :func:`.text.encode_prompted_text` and :func:`.vision.encode_prompted_image`
(which compute only the rows whose outputs are used, :mod:`.blocks`), called through the model's
``FrozenCLIP.encode_prompted_text`` / ``encode_prompted_image``: eager, or compiled with the train
option ``compile``.

What learns (and so what may be computed once and cached) is the method's entry in
:data:`mvlpt.study.vocabulary.METHODS`, not something a learner class states again.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from mvlpt.models.prompts.text import normalize
from mvlpt.study import vocabulary


class PromptLearner(nn.Module):
    """Learned prompts on a frozen CLIP.

    Only the prompt parameters are in ``state_dict()``; the CLIP model is held by reference and
    never trained. A subclass sets ``method`` (its key in :data:`mvlpt.study.vocabulary.METHODS`), builds its
    parameters, and implements ``current_prompts`` (plus ``fixed_text_features`` if its text side
    does not learn, and ``layout`` (a :class:`~.text.TokenLayout`) if it does), ``options()`` and the
    ``parameter_count`` classmethod. An image-conditioned method's ``current_prompts`` takes the image
    features and its ``text_embeddings`` gives one set of class prompts per image (CoCoOp).
    """

    method: str = ""
    deep: bool = True  # visual prompts replaced before every layer (VPT-deep, UPT) or inserted once
    # image-conditioned methods: class-prompt rows per text-tower call when no gradient is kept (evaluation
    # runs the images of a batch in chunks of this many class prompts; training needs them all at once)
    eval_text_rows: int = 8192

    def __init__(self, clip, classnames: list[str]):
        super().__init__()
        self.clip = clip  # a FrozenCLIP dataclass, not a Module: its weights stay out of state_dict
        self.classnames = list(classnames)

    # --------------------------------------------------------------- what the method is
    @property
    def learns_text(self) -> bool:
        return vocabulary.method(self.method).learns_text

    @property
    def learns_image(self) -> bool:
        return vocabulary.method(self.method).learns_image

    @property
    def image_conditioned(self) -> bool:
        """Its class text depends on each image (``current_prompts(image_features)``; CoCoOp)."""
        return vocabulary.method(self.method).image_conditioned

    @classmethod
    def parameter_count(cls, options: dict, dims: dict) -> int:
        """How many numbers its prompt file holds, from its full options (:func:`mvlpt.study.vocabulary.full_options`)
        and the model's ``dims`` (``embed_dim``, ``text_width``, ``vision_width``, ``layers``:
        :func:`mvlpt.running.model_check.model_dims`), without building it (the preflight sizes the study's files)."""
        raise NotImplementedError(f"{cls.__name__} does not say its parameter count (PromptLearner.parameter_count)")

    @classmethod
    def canonical_options(cls, options: dict | None, warn: bool = True) -> dict:
        """``options`` with deprecated names (the registry's ``option_aliases``) replaced by the current
        ones; a FutureWarning says so, unless ``warn`` is False (options read back from a file)."""
        options, renamed = vocabulary.canonical_options(cls.method, options)
        if warn:
            for old, new in renamed:
                warnings.warn(f"the {cls.method} option {old!r} is deprecated; call it {new!r}.", FutureWarning, stacklevel=3)
        return options

    def options(self) -> dict:
        """The options that define the parameter shapes (stored in checkpoints)."""
        return {}

    # ------------------------------------------------------------------ its prompts
    def current_prompts(self) -> dict[str, torch.Tensor | None]:
        """``{"text": (n, W_t) or (C, n, W_t) context or None, "visual": (layers, n, W_v) or None}``.
        An image-conditioned method takes ``image_features`` ((B, D), L2-normalised frozen features) and
        gives ``"text"`` (B, n, W_t), one context per image; without them, its visual prompts."""
        raise NotImplementedError

    def fixed_text_features(self) -> torch.Tensor:
        """(C, D) class features of methods whose text side does not learn."""
        raise NotImplementedError

    def text_embeddings(self, prompts: dict) -> torch.Tensor:
        """(C, L, W_t) prompt token embeddings of every class."""
        return self.layout.fill(prompts["text"])

    def shared_text_prefix(self, prompts: dict) -> int:
        """How many leading positions of :meth:`text_embeddings` are the same for every class: the
        layout's shared prefix when one context serves all classes, else 0 (class-specific context).
        A method that builds its embeddings otherwise must say so here (``tests/models/test_prompts.py``
        checks the claim of every registered method)."""
        return self.layout.shared_prefix if prompts["text"].dim() == 2 else 0

    # ---------------------------------------------------- one-set conveniences
    def text_features(self, prompts: dict | None = None, autocast: torch.dtype | None = None) -> torch.Tensor:
        """(C, D) L2-normalised class features."""
        return stacked_text_features([self], None if prompts is None else [prompts], autocast)[0]

    def text_features_once(self, autocast: torch.dtype | None = None) -> torch.Tensor | None:
        """(C, D) class features for a whole evaluation pass, or None when they depend on the image."""
        once = stacked_text_features_once([self], autocast)
        return None if once is None else once[0]

    def image_features(
        self, images: torch.Tensor, prompts: dict | None = None, autocast: torch.dtype | None = None
    ) -> torch.Tensor:
        """(B, D) L2-normalised features of images (B, 3, S, S): uint8 as loaded, or normalised float."""
        return stacked_image_features([self], [images], None if prompts is None else [prompts], autocast)[0]

    def logits(self, images=None, feats=None, text=None, autocast: torch.dtype | None = None) -> torch.Tensor:
        """(B, C) logits of one batch (see :func:`stacked_logits`)."""
        return stacked_logits(
            [self],
            None if images is None else [images],
            None if feats is None else [feats],
            None if text is None else [text],
            autocast,
        )[0]


# --------------------------------------------------------------------------------------------------
# The forward pass of a stack of prompt sets
# --------------------------------------------------------------------------------------------------
def _check_stack(learners: Sequence[PromptLearner]) -> PromptLearner:
    """The stack's first learner, after checking that all share method, model, classes and options."""
    if not learners:
        raise ValueError("a stack of prompt learners needs at least one learner")
    first = learners[0]
    for other in learners[1:]:
        if (
            type(other) is not type(first)
            or other.clip is not first.clip
            or other.classnames != first.classnames
            or other.options() != first.options()
        ):
            raise ValueError("stacked prompt learners must share method, model, class names and options")
    return first


def _amp(learner: PromptLearner, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on the model's device type (None: full precision, as the caller runs)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=str(learner.clip.device).split(":")[0], dtype=dtype)


def stacked_text_features_once(
    learners: Sequence[PromptLearner], autocast: torch.dtype | None = None
) -> list[torch.Tensor] | None:
    """Each learner's class features for a whole evaluation pass (:func:`stacked_text_features`), or
    None for an image-conditioned method, whose :func:`stacked_logits` computes them for every image."""
    return None if _check_stack(learners).image_conditioned else stacked_text_features(learners, autocast=autocast)


def stacked_text_features(
    learners: Sequence[PromptLearner], prompts: Sequence[dict] | None = None, autocast: torch.dtype | None = None
) -> list[torch.Tensor]:
    """Each learner's (C, D) L2-normalised class features; all learners' text prompts in one
    text-encoder batch. ``prompts[k]``: learner k's ``current_prompts()`` (computed if not given)."""
    first = _check_stack(learners)
    if first.image_conditioned:
        raise ValueError(
            f"{first.method}'s class features depend on the image: use stacked_logits or stacked_conditioned_text_features"
        )
    if not first.learns_text:
        return [lr.fixed_text_features() for lr in learners]
    with _amp(first, autocast):
        prompts = [lr.current_prompts() for lr in learners] if prompts is None else prompts
        emb = torch.cat([lr.text_embeddings(p) for lr, p in zip(learners, prompts)])
        eot = torch.cat([lr.layout.eot_pos for lr in learners])
        tower = first.clip.tower_model(autocast)  # the cast-once copy of the model under autocast, if made
        # the positions every class of a set shares run once per set, not once per class
        prefix = min(lr.shared_text_prefix(p) for lr, p in zip(learners, prompts))
        sizes = [len(lr.layout.eot_pos) for lr in learners]
        feats = normalize(
            first.clip.encode_prompted_text(
                tower, emb, eot, first.clip.model.transformer.get_cast_dtype(), shared_prefix=prefix, sets=len(learners)
            )
        )
    return list(feats.split(sizes))


def stacked_image_features(
    learners: Sequence[PromptLearner],
    images: Sequence[torch.Tensor],
    prompts: Sequence[dict] | None = None,
    autocast: torch.dtype | None = None,
) -> list[torch.Tensor]:
    """Each learner's (B_k, D) L2-normalised features of its batch ``images[k]`` (uint8 as loaded,
    normalised here with the model's mean and std, or normalised float), all batches in one pass of
    the image tower with per-image prompts. Frozen image towers (CoOp) run without autograd."""
    first = _check_stack(learners)
    sizes = [len(x) for x in images]
    x = torch.cat(list(images))
    with _amp(first, autocast):
        if x.dtype == torch.uint8:
            x = first.clip.normalize(x)
        else:
            x = x.to(first.clip.device)
        visual = first.clip.tower_model(autocast).visual
        if not first.learns_image:
            with torch.no_grad():
                feats = normalize(first.clip.encode_prompted_image(visual, x, None))
        else:
            prompts = [lr.current_prompts() for lr in learners] if prompts is None else prompts
            per_image = None  # no prompt tokens (n_ctx 0): the plain image tower
            if prompts[0]["visual"] is not None:
                per_image = torch.cat([p["visual"].unsqueeze(0).expand(n, *p["visual"].shape) for p, n in zip(prompts, sizes)])
            feats = normalize(first.clip.encode_prompted_image(visual, x, per_image, first.deep))
    return list(feats.split(sizes))


def stacked_logits(
    learners: Sequence[PromptLearner],
    images: Sequence[torch.Tensor] | None = None,
    feats: Sequence[torch.Tensor] | None = None,
    text: Sequence[torch.Tensor] | None = None,
    autocast: torch.dtype | None = None,
) -> list[torch.Tensor]:
    """Each learner's logits (B_k, C) over its classes, in one pass of each frozen tower.

    Learner k's batch is ``images[k]`` (see :func:`stacked_image_features`) or ``feats[k]``, its
    cached L2-normalised image features (methods whose image side does not learn). ``text[k]``, if
    given, is learner k's class features (evaluation computes them once, not for every batch).
    The towers run under ``autocast`` (a dtype, or None for full precision); the logits themselves
    are computed in float32.
    """
    first = _check_stack(learners)
    if (images is None) == (feats is None):
        raise ValueError("give either images or cached image features")
    if first.image_conditioned:
        return _conditioned_logits(learners, images, feats, autocast)
    need_text = text is None and first.learns_text
    need_image = images is not None and first.learns_image
    with _amp(first, autocast):
        prompts = [lr.current_prompts() for lr in learners] if need_text or need_image else None
    if text is None:
        text = stacked_text_features(learners, prompts, autocast)
    if feats is not None:
        img = [f.to(first.clip.device) for f in feats]
    else:
        img = stacked_image_features(learners, images, prompts, autocast)
    scale = first.clip.model.logit_scale.exp().float()
    return [scale * i.float() @ t.float().t() for i, t in zip(img, text)]


def stacked_conditioned_text_features(
    learners: Sequence[PromptLearner], image_features: Sequence[torch.Tensor], autocast: torch.dtype | None = None
) -> list[torch.Tensor]:
    """Each learner's (B_k, C, D) L2-normalised class features of every image of its batch, for an
    image-conditioned method: ``current_prompts(image_features[k])`` gives one context per image, the
    learner's :meth:`~PromptLearner.text_embeddings` the B_k sets of class prompts, and all sets of all
    learners go through the text tower in one batch, each set's shared prefix once."""
    first = _check_stack(learners)
    with _amp(first, autocast):
        prompts = [lr.current_prompts(f.to(first.clip.device)) for lr, f in zip(learners, image_features)]
        emb = torch.cat([lr.text_embeddings(p) for lr, p in zip(learners, prompts)])
        sets = [len(f) for f in image_features]
        eot = torch.cat([lr.layout.eot_pos.repeat(n) for lr, n in zip(learners, sets)])
        tower = first.clip.tower_model(autocast)
        prefix = min(lr.shared_text_prefix(p) for lr, p in zip(learners, prompts))
        feats = normalize(
            first.clip.encode_prompted_text(
                tower, emb, eot, first.clip.model.transformer.get_cast_dtype(), shared_prefix=prefix, sets=sum(sets)
            )
        )
    C = len(first.classnames)
    return [f.reshape(n, C, -1) for f, n in zip(feats.split([n * C for n in sets]), sets)]


def _conditioned_logits(learners: Sequence[PromptLearner], images, feats, autocast) -> list[torch.Tensor]:
    """:func:`stacked_logits` of an image-conditioned method: the image features first (cached, or from
    the image tower), then every image's own class features, each image scored against its own. Without
    autograd (evaluation) the images go through the text tower in chunks of at most
    ``eval_text_rows`` class prompts."""
    first = _check_stack(learners)
    if feats is not None:
        img = [f.to(first.clip.device) for f in feats]
    else:
        img = stacked_image_features(learners, images, None, autocast)
    C = len(first.classnames)
    step = max(1, first.eval_text_rows // max(C, 1)) if not torch.is_grad_enabled() else None
    if step is None or max((len(i) for i in img), default=0) <= step:
        text = stacked_conditioned_text_features(learners, img, autocast)
    else:
        chunks = [
            stacked_conditioned_text_features(learners, [i[s : s + step] for i in img], autocast)
            for s in range(0, max(len(i) for i in img), step)
        ]
        text = [torch.cat([c[k] for c in chunks]) for k in range(len(learners))]
    scale = first.clip.model.logit_scale.exp().float()
    return [scale * torch.einsum("bd,bcd->bc", i.float(), t.float()) for i, t in zip(img, text)]

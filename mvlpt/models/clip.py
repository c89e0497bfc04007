"""Load an open_clip model, frozen and in eval mode.

* Any open_clip model name + pretrained tag (the paper: ``ViT-B-16-quickgelu`` / ``openai``), or a
  local weights file as ``pretrained``.
* ``mvlpt-tiny``: a tiny config shipped in ``mvlpt/models/configs``, randomly initialised from
  ``init_seed`` (``pretrained=None``), or with ``pretrained="synthetic"``: weights shipped in
  ``mvlpt/models/weights``, contrastively pre-trained on captioned images of the offline suite's
  renderers (``mvlpt.models.pretrain_tiny``), for tests and the offline demo.

Weights are looked up in the Hugging Face cache first. When they are not there and cannot be
downloaded (no network, ``HF_HUB_OFFLINE=1``), :func:`load_clip` stops at once with one sentence
saying which weights, where they were looked for and how to provide them; it never hangs in
retries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mvlpt.errors import MvlptError

CONFIG_DIR = Path(__file__).parent / "configs"
TINY = "mvlpt-tiny"
# pretrained tags of mvlpt-tiny shipped in the package (made by mvlpt/models/pretrain_tiny.py)
TINY_WEIGHTS = {"synthetic": Path(__file__).parent / "weights" / "mvlpt-tiny-synthetic.safetensors"}
_configs_added = False


def open_clip_module():
    global _configs_added
    import open_clip

    if not _configs_added:
        open_clip.add_model_config(CONFIG_DIR)
        _configs_added = True
    return open_clip


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """Where the weights of a model/pretrained pair come from."""

    path: str | None  # a local file (shipped, given, or in the Hugging Face cache), or None
    hub_repo: str = ""  # the Hugging Face hub repo they are downloaded from ("" if none)
    hub_files: tuple[str, ...] = ()  # the candidate file names in that repo
    url: str = ""  # open_clip's plain download URL when there is no hub repo


def weights_cache_dir(cache_dir: str | None = None) -> str:
    return cache_dir or os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"


def local_weights(model: str, pretrained: str, cache_dir: str | None = None) -> WeightsSource:
    """Where ``model``/``pretrained`` come from, looking only on this machine (never downloads):
    the shipped tiny weights, a weights file, or the Hugging Face cache. An unknown tag is an error."""
    if model == TINY and pretrained in TINY_WEIGHTS:
        return WeightsSource(str(TINY_WEIGHTS[pretrained]))
    if Path(pretrained).expanduser().is_file():
        return WeightsSource(str(Path(pretrained).expanduser()))
    if Path(pretrained).expanduser().is_dir():
        raise MvlptError(f"the weights {pretrained!r} are a folder; give the weights file in it, or an open_clip tag.")
    if not pretrained.startswith("hf-hub:") and (
        os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))
    ):
        raise MvlptError(
            f"the weights file {pretrained} does not exist; give the path of an existing file, or an "
            f"open_clip pretrained tag (`python -c 'import open_clip; print(open_clip.list_pretrained())'`)."
        )
    open_clip = open_clip_module()
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        tags = [t for m, t in open_clip.list_pretrained() if m == model]
        raise MvlptError(
            f"open_clip has no pretrained tag {pretrained!r} for model {model!r}"
            + (f" (known tags: {', '.join(tags)})" if tags else " (and no weights file exists at that path)")
            + "."
        )
    hub = cfg.get("hf_hub", "")
    if not hub:
        return WeightsSource(None, url=cfg.get("url", ""))
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo_id, filename = os.path.split(hub)
    candidates = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if filename.endswith((".bin", ".pth", ".pt")):
        candidates.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
    for name in candidates:
        try:
            return WeightsSource(
                hf_hub_download(repo_id, name, cache_dir=cache_dir, local_files_only=True), repo_id, tuple(candidates)
            )
        except (LocalEntryNotFoundError, FileNotFoundError, OSError):
            continue
    return WeightsSource(None, repo_id, tuple(candidates))


def resolve_weights(model: str, pretrained: str, cache_dir: str | None = None) -> str:
    """Return a local path to the weights of ``model``/``pretrained``, downloading them if possible."""
    src = local_weights(model, pretrained, cache_dir)
    if src.path:
        return src.path
    where = weights_cache_dir(cache_dir)
    if src.hub_repo:
        from huggingface_hub import hf_hub_download

        repo_id, candidates = src.hub_repo, src.hub_files
        if not _hub_reachable():
            raise MvlptError(
                f"the weights {model}/{pretrained} (hub repo {repo_id}) are not in the Hugging Face cache "
                f"({where}) and cannot be downloaded from here (no network or HF_HUB_OFFLINE=1): download them "
                f"on a machine with network (`hf download {repo_id}`) into that cache, or pass "
                f"the weights file itself as the pretrained value."
            )
        last: Exception | None = None
        for name in candidates:
            try:
                return hf_hub_download(repo_id, name, cache_dir=cache_dir)
            except Exception as e:  # noqa: BLE001 - reported below
                last = e
        raise MvlptError(f"downloading the weights {model}/{pretrained} from hub repo {repo_id} failed: {last}.")
    raise MvlptError(
        f"the weights {model}/{pretrained} are only available from {src.url}, which mvlpt does not download; "
        f"download the file yourself and pass its path as the pretrained value."
    )


# The most compiled entries dynamo keeps for one prompted encoder in a process (see FrozenCLIP.compile).
# One run needs about 12 per encoder at most; the benchmark runs 3 methods x 2 modes in one process.
RECOMPILE_LIMIT = 64


def compile_time_s() -> float:
    """Seconds this process has spent in torch.compile so far (dynamo's own account: tracing, the
    backend's forward and backward compilation); 0.0 if this torch does not keep that account."""
    try:
        from torch._dynamo.utils import calculate_time_spent

        return float(calculate_time_spent().get("total_wall_time", 0.0))
    except Exception:  # noqa: BLE001 - a private torch API: the figure is informative only
        return 0.0


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def compile_account(since: dict | None = None) -> dict[str, float]:
    """This process's torch.compile so far, or since the account ``since``: ``compile_s``
    (:func:`compile_time_s`, rounded to ms), ``graphs`` (:func:`compiled_graphs`), and ``cache_hits`` /
    ``cache_misses`` of inductor's on-disk cache of compiled graphs (forward and backward graphs each
    count; a hit loads the generated code instead of generating it). The cache lives in
    ``TORCHINDUCTOR_CACHE_DIR`` (``mvlpt train --compile-cache``; the workflow's jobs share one), so a
    run whose graphs an earlier run compiled pays mostly tracing."""
    from torch._dynamo.utils import counters

    now = {
        "compile_s": compile_time_s(),
        "graphs": compiled_graphs(),
        "cache_hits": int(counters["inductor"]["fxgraph_cache_hit"]),
        "cache_misses": int(counters["inductor"]["fxgraph_cache_miss"]),
    }
    if since:
        now = {k: v - since[k] for k, v in now.items()}
    now["compile_s"] = round(now["compile_s"], 3)
    return now


@contextlib.contextmanager
def compile_errors(mode: str):
    """Turn a torch.compile failure (dynamo, the backend compiler, a missing C++ compiler, the
    recompile limit) into one sentence that names the option to switch it off."""
    import torch._dynamo.exc as dynamo_exc
    from torch._inductor.exc import CppCompileError

    try:
        yield
    except (dynamo_exc.TorchDynamoException, dynamo_exc.FailOnRecompileLimitHit, CppCompileError) as e:
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise MvlptError(
            f"torch.compile (train option compile: {mode}) failed: {type(e).__name__}: {first[:300]}; "
            f"switch it off with `train: {{compile: none}}` in the workflow config or "
            f'--train-options \'{{"compile": "none"}}\'.'
        ) from e


@dataclasses.dataclass
class FrozenCLIP:
    """An open_clip CLIP model with everything frozen, plus its tokenizer and image transform."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    pretrained: str | None
    init_seed: int
    device: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # the towers with their matrix-product weights cast once (dtype -> model), see cast_frozen
    low_precision: dict = dataclasses.field(default_factory=dict, repr=False)
    _mean_std: dict = dataclasses.field(default_factory=dict, repr=False)  # device -> (mean, std) tensors
    compiled: str = "none"  # the torch.compile mode of the prompted encoders ("none": eager), see compile
    _encoders: dict = dataclasses.field(default_factory=dict, repr=False)  # "text"/"image" -> compiled function

    # ------------------------------------------------------------------ the prompted encoders
    def compile(self, mode: str = "default", backend: str = "inductor") -> None:
        """Run the prompted encoders (:meth:`encode_prompted_text`, :meth:`encode_prompted_image`)
        through ``torch.compile(mode=mode)`` from now on ("none": eager again). ``mode`` is one of
        torch.compile's (``reduce-overhead`` adds CUDA graphs on a GPU; the caller then marks each
        training step with ``torch.compiler.cudagraph_mark_step_begin()``); ``backend`` other than
        inductor (e.g. ``aot_eager``) is for tests. Compilation happens at the first call of each
        shape; a failure then ends in one sentence (:class:`MvlptError`) naming ``compile: none``.

        Shapes: ``dynamic=False`` and ``fullgraph=True``. A run calls each encoder with a handful of
        fixed shapes (full and last train batch with grad, full and last validation and test batches
        without; the fp32 tower or its cast-once copy), the same in every epoch, so static graphs
        (what CUDA graphs and max-autotune want) are bounded by those shapes, not by the epochs; a
        graph break would split a tower into pieces and is an error instead. Dynamo keeps its
        compiled entries per code object, shared by every FrozenCLIP of a process (the benchmark and
        the tests build several models, methods and modes in one process): the recompile limit is
        raised from torch's 8 to :data:`RECOMPILE_LIMIT` for these calls, and reaching it raises
        instead of silently running eager from then on."""
        from mvlpt.training.config import COMPILE_MODES

        if mode not in COMPILE_MODES:
            raise MvlptError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}.")
        self._encoders.clear()
        self.compiled = mode
        if mode == "none":
            return
        from mvlpt.models.prompts.text import encode_prompted_text
        from mvlpt.models.prompts.vision import encode_prompted_image

        options = {"mode": None if mode == "default" else mode} if backend == "inductor" else {}
        for name, fn in (("text", encode_prompted_text), ("image", encode_prompted_image)):
            self._encoders[name] = torch.compile(fn, backend=backend, fullgraph=True, dynamic=False, **options)

    def _run_encoder(self, name: str, eager, args, kwargs):
        fn = self._encoders.get(name)
        if fn is None:
            return eager(*args, **kwargs)
        import torch._dynamo

        with (
            compile_errors(self.compiled),
            torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT, fail_on_recompile_limit_hit=True),
        ):
            return fn(*args, **kwargs)

    def encode_prompted_text(self, *args, **kwargs) -> torch.Tensor:
        """:func:`mvlpt.models.prompts.text.encode_prompted_text`, eager or compiled (:meth:`compile`)."""
        from mvlpt.models.prompts.text import encode_prompted_text

        return self._run_encoder("text", encode_prompted_text, args, kwargs)

    def encode_prompted_image(self, *args, **kwargs) -> torch.Tensor:
        """:func:`mvlpt.models.prompts.vision.encode_prompted_image`, eager or compiled (:meth:`compile`)."""
        from mvlpt.models.prompts.vision import encode_prompted_image

        return self._run_encoder("image", encode_prompted_image, args, kwargs)

    def cast_frozen(self, dtype: torch.dtype) -> None:
        """Keep a copy of the model whose matrix-product and convolution weights (Linear, Conv,
        attention in-projections, the two output projections) are cast to ``dtype`` once, with
        open_clip's own ``convert_weights_to_lp``; LayerNorm, embeddings and ``logit_scale`` stay
        float32. Under autocast to ``dtype`` those ops cast their weights to ``dtype`` on every call,
        so running the copy gives bit-identical results without the per-step casts
        (tests/training/test_speed.py). The float32 model is kept for everything that runs without autocast
        (cached features, fixed class features)."""
        if dtype in self.low_precision or dtype == torch.float32:
            return
        import copy

        from open_clip.model import convert_weights_to_lp

        lowp = copy.deepcopy(self.model)
        convert_weights_to_lp(lowp, dtype)
        # nn.MultiheadAttention takes a fused "fast path" in eval mode without grad when the input's
        # dtype equals its weights' (autocast on a GPU rules it out; CPU autocast does not): training
        # mode, with dropout 0, keeps the copy on the path the float32 weights take.
        for m in lowp.modules():
            if isinstance(m, torch.nn.MultiheadAttention) and m.dropout == 0:
                m.train()
        self.low_precision[dtype] = lowp

    def tower_model(self, autocast: torch.dtype | None) -> torch.nn.Module:
        """The model a forward under ``autocast`` runs: the cast-once copy if there is one."""
        return self.low_precision.get(autocast, self.model) if autocast is not None else self.model

    @property
    def key(self) -> str:
        """A filesystem-safe identifier of model + weights, for caches."""
        tag = self.pretrained or f"random{self.init_seed}"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{self.name}_{Path(tag).name}")

    def to_uint8(self, image: Image.Image) -> torch.Tensor:
        """ELEVATER preprocessing, first half: RGB, plain resize to SxS (bicubic), no crop: (3, S, S) uint8."""
        img = image.convert("RGB")
        if img.size != (self.image_size, self.image_size):
            img = img.resize((self.image_size, self.image_size), Image.BICUBIC)
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """Second half: uint8 (B, 3, S, S) -> float, CLIP mean/std, on the model's device."""
        x = batch.to(self.device, non_blocking=True).float().div_(255.0)
        if x.device not in self._mean_std:  # made once per device: no host-to-device copy per batch
            self._mean_std[x.device] = (
                torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1),
                torch.tensor(self.std, device=x.device).view(1, 3, 1, 1),
            )
        mean, std = self._mean_std[x.device]
        return (x - mean) / std

    def transform(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> normalised float tensor (3, S, S) (on the CPU)."""
        return self.normalize(self.to_uint8(image).unsqueeze(0))[0].cpu()

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts))

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.model.encode_image(images.to(self.device))
        return F.normalize(feats.float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        feats = self.model.encode_text(self.tokenize(texts).to(self.device))
        return F.normalize(feats.float(), dim=-1)


def load_clip(
    model: str = TINY,
    pretrained: str | None = None,
    *,
    cache_dir: str | None = None,
    device: str = "cpu",
    init_seed: int = 0,
) -> FrozenCLIP:
    """Load ``model`` with ``pretrained`` weights (None: random init from ``init_seed``), frozen, in eval mode."""
    open_clip = open_clip_module()
    if model not in open_clip.list_models():
        raise MvlptError(
            f"unknown open_clip model {model!r}; use {TINY!r} for the offline tiny model or one of "
            f"open_clip.list_models() (for the paper: ViT-B-16-quickgelu)."
        )
    if pretrained in ("", "none", "None"):
        pretrained = None
    weights = resolve_weights(model, pretrained, cache_dir) if pretrained else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        logging.disable(logging.WARNING)  # open_clip warns on every random init, which is intended here
        try:
            net = open_clip.create_model(model, pretrained=weights, device="cpu")
        finally:
            logging.disable(logging.NOTSET)
    if not hasattr(net, "token_embedding") or not hasattr(net, "visual"):
        raise MvlptError(f"model {model!r} is not a plain CLIP (separate text tower); mvlpt's prompts need one.")
    net.eval().requires_grad_(False)
    net.to(device)
    pp = net.visual.preprocess_cfg if hasattr(net.visual, "preprocess_cfg") else {}
    size = net.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    mean = tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(pp.get("std", open_clip.OPENAI_DATASET_STD))
    return FrozenCLIP(
        model=net,
        tokenizer=open_clip.get_tokenizer(model),
        name=model,
        pretrained=pretrained,
        init_seed=init_seed,
        device=str(device),
        image_size=size,
        mean=mean,
        std=std,
    )

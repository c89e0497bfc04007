"""The cost model's calibration (:class:`Calibration`): the per-method coefficients of :mod:`mvlpt.running.cost`
and which device and model they describe.

Shipped: an NVIDIA H100, ViT-B-16, bf16, derived from the step times measured for the speed work
(``mvlpt/tasks/data/cost_calibration.json``, with its assumptions). :func:`calibrate` measures the
coefficients on this machine's GPU (or CPU) in a minute or two (``mvlpt preflight --calibrate``:
:func:`measure_calibration`, for a config's model) and :func:`save_user_calibration` stores them in
``~/.cache/mvlpt/cost_calibration.json`` (``$MVLPT_COST_CALIBRATION`` overrides the path);
:func:`load_calibration` prefers that file when it describes the same model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from importlib import resources
from pathlib import Path

from mvlpt.errors import MvlptError
from mvlpt.running.cost import method_image_conditioned, method_learns, method_priced_as, text_rows
from mvlpt.study import vocabulary

FORMAT = 1
SHIPPED = "cost_calibration.json"  # in mvlpt/tasks/data (package data)
USER_ENV = "MVLPT_COST_CALIBRATION"
COEFFS = ("fixed_ms", "text_us_per_token", "image_ms_per_image")


@dataclasses.dataclass
class Calibration:
    device: str
    model: str
    precision: str
    origin: str  # "shipped" or "measured"
    methods: dict  # method -> {"step": {...}, "forward": {...}} (COEFFS)
    features_ms_per_image: float
    job_setup_s: float
    decode_images_per_s: float
    path: str = ""
    measured_at: str = ""
    assumptions: list = dataclasses.field(default_factory=list)

    def step_s(
        self, method: str, *, seeds: int, classes: int, length: int, batch: int, prefix: int = 0, task_tokens: int = 0
    ) -> float:
        """``prefix``: the leading tokens all classes' prompts share (see :func:`text_rows`);
        ``task_tokens``: tokens of the task prompts a task-conditioned method (SoftCPT) sends through the
        text tower on top of its class prompts, per seed. An image-conditioned method sends a set of
        class prompts per image of the batch."""
        sets = batch if method_image_conditioned(method) else 1
        return self._cost(method, "step", seeds * sets * text_rows(classes, length, prefix, task_tokens), seeds * batch)

    def forward_s(self, method: str, *, text_tokens: int, images: int) -> float:
        return self._cost(method, "forward", text_tokens, images)

    def _cost(self, method: str, kind: str, tokens: int, images: int) -> float:
        c = self.coefficients(method)[kind]
        t = c["fixed_ms"] / 1e3
        text, image = method_learns(method)
        if text:
            t += c["text_us_per_token"] * tokens / 1e6
        if image:
            t += c["image_ms_per_image"] * images / 1e3
        return t

    def coefficients(self, method: str) -> dict:
        """The method's coefficients, or those of its registry entry's ``priced_as`` method when it has none."""
        if method not in self.methods and method_priced_as(method) in self.methods:
            return self.methods[method_priced_as(method)]
        try:
            return self.methods[method]
        except KeyError:
            fix = (
                f"name a calibrated method ({', '.join(self.methods)}) as its `priced_as` in mvlpt.study.vocabulary.METHODS"
                if method in vocabulary.METHODS
                else "run `mvlpt preflight --calibrate`"
            )
            raise MvlptError(
                f"the cost calibration {self.path or '(in memory)'} has no figures for method {method!r}; {fix}."
            ) from None

    def borrows(self, method: str) -> str | None:
        """The method whose coefficients price ``method`` when the calibration has none of its own, else None."""
        return method_priced_as(method) if method not in self.methods and method_priced_as(method) in self.methods else None

    def describes(self) -> str:
        how = "measured here" if self.origin == "measured" else "shipped with mvlpt"
        return f"{self.device}, {self.model}, {self.precision} ({how})"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("path")
        return {"format": FORMAT, **d}


def _from_dict(d: dict, path: str) -> Calibration:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise MvlptError(
            f"cost calibration {path} is not a format-{FORMAT} mvlpt calibration; delete it and run "
            f"`mvlpt preflight --calibrate` again."
        )
    try:
        methods = {m: {k: {c: float(v[k][c]) for c in COEFFS} for k in ("step", "forward")} for m, v in d["methods"].items()}
        return Calibration(
            device=str(d["device"]),
            model=str(d["model"]),
            precision=str(d.get("precision", "")),
            origin=str(d.get("origin", "measured")),
            methods=methods,
            features_ms_per_image=float(d["features_ms_per_image"]),
            job_setup_s=float(d["job_setup_s"]),
            decode_images_per_s=float(d["decode_images_per_s"]),
            path=path,
            measured_at=str(d.get("measured_at", "")),
            assumptions=list(d.get("assumptions", [])),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise MvlptError(
            f"cost calibration {path} lacks or garbles {e}; delete it and run `mvlpt preflight --calibrate` again."
        ) from None


def shipped_calibration() -> Calibration:
    ref = resources.files("mvlpt.tasks").joinpath("data", SHIPPED)
    return _from_dict(json.loads(ref.read_text(encoding="utf-8")), f"mvlpt/tasks/data/{SHIPPED}")


def user_calibration_path() -> Path:
    env = os.environ.get(USER_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache"
    return Path(base).expanduser() / "mvlpt" / "cost_calibration.json"


def load_calibration(model: str | None = None) -> tuple[Calibration, str | None]:
    """The calibration to price a study of ``model`` with, and a note when it does not describe that model.

    The user's own (``--calibrate``) wins when it was measured with ``model``; else the shipped H100 one."""
    p = user_calibration_path()
    shipped = shipped_calibration()
    if p.is_file():
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise MvlptError(
                f"cost calibration {p} cannot be read; delete it and run `mvlpt preflight --calibrate` again."
            ) from None
        user = _from_dict(d, str(p))
        if model is None or _same_model(user.model, model):
            return user, None
        if _same_model(shipped.model, model):
            return shipped, f"your calibration {p} was measured with {user.model}, not {model}: using the shipped one"
        return user, (
            f"your calibration {p} was measured with {user.model}, the config trains {model}: "
            f"run `mvlpt preflight --calibrate` with this config"
        )
    if model is not None and not _same_model(shipped.model, model):
        return shipped, (
            f"the shipped calibration describes {shipped.model}, the config trains {model}: "
            f"run `mvlpt preflight --calibrate` for an estimate of this model"
        )
    return shipped, None


def _same_model(a: str, b: str) -> bool:
    norm = lambda s: s.replace("-quickgelu", "")  # noqa: E731 - QuickGELU costs what GELU costs
    return norm(a) == norm(b)


def save_user_calibration(cal: Calibration) -> Path:
    from mvlpt.io import write_json

    p = user_calibration_path()
    write_json(cal.to_dict(), p)
    return p


def _timer(device: str):
    """Seconds per call of ``fn``: calls repeated for at least 50 ms, the fastest of ``reps`` rounds
    (on a shared machine interference only adds time)."""
    import torch

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(fn, reps: int) -> float:
        fn()  # warm-up
        sync()
        best = math.inf
        for _ in range(reps):
            n, t0 = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                sync()
                dt = time.perf_counter() - t0
                if dt >= 0.05:
                    break
            best = min(best, dt / n)
        return best

    return run


def _affine(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float]:
    """(intercept, slope) through two points; proportional through the larger one when noise makes
    the slope or the intercept negative."""
    slope = (y2 - y1) / (x2 - x1)
    if slope <= 0 or y1 - slope * x1 < 0:
        return 0.0, y2 / x2
    return y1 - slope * x1, slope


def calibrate(
    model: str = "ViT-B-16",
    device: str | None = None,
    *,
    workers: int = 3,
    n_ctx: int = 16,
    vpt_tokens: int = 16,
    upt_tokens: int = 4,
    say=print,
) -> Calibration:
    """Measure the cost coefficients of ``model`` (random weights: timing only) on ``device``
    (default: the first CUDA GPU, else the CPU). Takes a minute or two."""
    import numpy as np
    import torch
    from PIL import Image

    from mvlpt.models.clip import load_clip
    from mvlpt.models.prompts.text import encode_prompted_text
    from mvlpt.models.prompts.vision import encode_prompted_image

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    name = (
        torch.cuda.get_device_name(torch.device(device))
        if cuda
        else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    )
    precision = "bf16" if cuda else "fp32"
    t0 = time.perf_counter()
    clip = load_clip(model, None, device=device)
    load_s = time.perf_counter() - t0
    net, visual = clip.model, clip.model.visual
    W_t = net.token_embedding.weight.shape[1]
    W_v, layers, S = visual.conv1.weight.shape[0], len(visual.transformer.resblocks), clip.image_size
    timed = _timer(device)
    reps = 3
    gen = torch.Generator().manual_seed(0)

    def ac():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    L = n_ctx + 6

    def text(n: int, backward: bool):
        x = torch.randn(n, L, W_t, generator=gen).mul_(0.02).to(device).requires_grad_(backward)
        eot = torch.full((n,), L - 1, device=device)

        def f():
            with ac(), torch.set_grad_enabled(backward):
                out = encode_prompted_text(net, x, eot)
            if backward:
                out.float().square().sum().backward()

        return f

    def image(B: int, n_prompt: int, backward: bool):
        x = torch.randn(B, 3, S, S, generator=gen).to(device)
        p = torch.randn(layers, n_prompt, W_v, generator=gen).mul_(0.02).to(device).requires_grad_(backward) if n_prompt else None

        def f():
            with ac(), torch.set_grad_enabled(backward):
                out = encode_prompted_image(visual, x, p, True)
            if backward:
                out.float().square().sum().backward()

        return f

    n_small, n_large = (32, 512) if cuda else (4, 16)
    b_small, b_large = (16, 128) if cuda else (1, 3)
    say(f"calibrating {model} on {name} ({precision}) ...")
    fit = {}
    for key, mk, (lo, hi), per in (
        ("text_fwd_bwd", lambda n: text(n, True), (n_small, n_large), L),
        ("text_fwd", lambda n: text(n, False), (n_small, n_large), L),
        ("vpt_fwd_bwd", lambda b: image(b, vpt_tokens, True), (b_small, b_large), 1),
        ("vpt_fwd", lambda b: image(b, vpt_tokens, False), (b_small, b_large), 1),
        ("upt_fwd_bwd", lambda b: image(b, upt_tokens, True), (b_small, b_large), 1),
        ("upt_fwd", lambda b: image(b, upt_tokens, False), (b_small, b_large), 1),
        ("plain_fwd", lambda b: image(b, 0, False), (b_small, b_large), 1),
    ):
        y1 = timed(mk(lo), reps)
        if y1 < 0.05:  # a small model: a wider span keeps the slope above the noise
            hi = lo * 8
        y2 = timed(mk(hi), reps)
        fit[key] = _affine(lo * per, y1, hi * per, y2)  # seconds, seconds per token / image
        say(f"  {key}: {y1 * 1e3:.1f} ms at {lo}, {y2 * 1e3:.1f} ms at {hi}")
        if cuda:
            torch.cuda.empty_cache()

    def coeffs(text_key, image_key):
        a_t, b_t = fit[text_key] if text_key else (0.0, 0.0)
        a_i, b_i = fit[image_key] if image_key else (0.0, 0.0)
        return {"fixed_ms": (a_t + a_i) * 1e3, "text_us_per_token": b_t * 1e6, "image_ms_per_image": b_i * 1e3}

    methods = {
        "coop": {"step": coeffs("text_fwd_bwd", None), "forward": coeffs("text_fwd", "plain_fwd")},
        "vpt": {"step": coeffs(None, "vpt_fwd_bwd"), "forward": coeffs("text_fwd", "vpt_fwd")},
        "upt": {"step": coeffs("text_fwd_bwd", "upt_fwd_bwd"), "forward": coeffs("text_fwd", "upt_fwd")},
    }
    # image decoding: a photo-sized JPEG to 224 x 224, in this process; the workers multiply it
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    t1, n = time.perf_counter(), 0
    while time.perf_counter() - t1 < 1.0:
        Image.open(io.BytesIO(data)).convert("RGB").resize((S, S), Image.BICUBIC)
        n += 1
    decode = n / (time.perf_counter() - t1) * max(1, workers)
    return Calibration(
        device=name,
        model=model,
        precision=precision,
        origin="measured",
        methods=methods,
        features_ms_per_image=fit["plain_fwd"][1] * 1e3,
        job_setup_s=round(load_s + 10.0, 1),
        decode_images_per_s=round(decode, 1),
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        assumptions=[
            f"per job: the model load measured here ({load_s:.1f} s) + 10 s of process start, imports and few-shot data",
            f"image decoding measured in one process, times {max(1, workers)} workers",
        ],
    )


def measure_calibration(cfg: dict, say=print) -> str:
    """``--calibrate``: measure this machine's GPU (or CPU) for ``cfg``'s model and store it."""
    from mvlpt.running.preflight import with_defaults

    cfg = with_defaults(cfg)
    opts = cfg.get("method_options") or {}
    cal = calibrate(
        cfg["model"]["name"],
        None if str(cfg.get("device", "auto")) == "auto" else str(cfg["device"]),
        workers=int(cfg["train"].get("workers", 3) or 1),
        n_ctx=int((opts.get("coop") or {}).get("n_ctx", 16)),
        vpt_tokens=int(vocabulary.canonical_options("vpt", opts.get("vpt"))[0].get("n_ctx", 16)),
        upt_tokens=int((opts.get("upt") or {}).get("n_ctx", 4)),
        say=say,
    )
    return str(save_user_calibration(cal))

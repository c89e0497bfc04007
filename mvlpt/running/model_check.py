"""Preflight, the model: its weights resolvable offline, never downloading (:func:`check_weights`), and the
towers' dimensions that size the study's files (:func:`model_dims`)."""

from __future__ import annotations

from mvlpt.errors import MvlptError


def check_weights(model: dict, problems: list) -> dict:
    """Where the weights come from, without downloading anything."""
    name, pretrained = model.get("name", "mvlpt-tiny"), model.get("pretrained")
    out = {"name": name, "pretrained": pretrained, "weights": None, "resolved": True}
    from mvlpt.models.clip import local_weights, open_clip_module, weights_cache_dir

    if name not in open_clip_module().list_models():
        problems.append(f"model {name!r} is not an open_clip model; set `model.name` (the paper: ViT-B-16-quickgelu).")
        out["resolved"] = False
        return out
    if pretrained in (None, "", "none", "None"):
        out["weights"] = f"random init (seed {model.get('init_seed', 0)})"
        return out
    try:
        src = local_weights(name, str(pretrained))
    except MvlptError as e:
        problems.append(f"model weights: {str(e).rstrip('.')}; set `model.pretrained`.")
        out["resolved"] = False
        return out
    if src.path:
        out["weights"] = src.path
        return out
    out["resolved"] = False
    if not src.hub_repo:
        problems.append(
            f"model weights {name}/{pretrained}: only downloadable from {src.url or '?'}, which mvlpt does "
            f"not do; download the file and set `model.pretrained` to its path."
        )
        return out
    repo_id, where = src.hub_repo, weights_cache_dir()
    problems.append(
        f"model weights {name}/{pretrained} are not in the Hugging Face cache ({where}); run "
        f"`hf download {repo_id}` (on a machine with network, into that cache), or set `model.pretrained` "
        f"to a weights file."
    )
    return out


def model_dims(name: str) -> dict:
    from mvlpt.models.clip import open_clip_module

    mc = open_clip_module().get_model_config(name) or {}
    v, t = mc.get("vision_cfg", {}), mc.get("text_cfg", {})
    return {
        "embed_dim": int(mc.get("embed_dim", 512)),
        "text_width": int(t.get("width", 512)),
        "vision_width": int(v.get("width", 768)),
        "layers": int(v.get("layers", 12)),
    }

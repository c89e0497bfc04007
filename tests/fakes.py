"""Fabricated result records and studies for the analysis tests (the numbers mean nothing).

Every record passes :func:`mvlpt.study.vocabulary.check_record` and is written by :func:`mvlpt.study.results.write_result`,
so a fake study is laid out and validated exactly as ``mvlpt train`` leaves a real one.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mvlpt.analysis.tables import write_table
from mvlpt.study import layout, vocabulary
from mvlpt.study.results import write_result
from mvlpt.tasks import elevater, get_task
from mvlpt.training.config import RunSpec, TrainConfig


def make_record(method="coop", source="a", target="a", seed=1, test=0.5, **fields) -> dict:
    """A complete, valid result record (what ``mvlpt train`` writes), with ``fields`` overridden."""
    rec = {
        "format": vocabulary.RESULT_FORMAT,
        "method": method,
        "source": source,
        "target": target,
        "mode": "single" if source == target else "joint",
        "seed": int(seed),
        "shots": 5,
        "metric": "accuracy",
        "test": test,
        "val": 0.5,
        "best_epoch": 3,
        "epochs": 5,
        "wall_time_s": 1.0,
        "device": "cpu",
        "model": "fake",
        "pretrained": None,
        "mvlpt_version": "0",
        "config_hash": "fake",
        "n_train": 10,
        "n_val": 5,
        "n_test": 20,
    }
    rec.update(fields)
    return rec


def write_record(root, method="coop", source="a", target="a", seed=1, test=0.5, **fields) -> Path:
    """Write :func:`make_record` where the study's layout puts it; returns the path."""
    path = layout.RESULT.path(root, method, source, target, seed)
    write_result(make_record(method, source, target, seed, test, **fields), path)
    return path


def write_fake_study(
    root: str | os.PathLike,
    tasks: Sequence[str] = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta"),
    methods: Sequence[str] = ("coop", "vpt"),
    seeds: Sequence[int] = (1, 2, 3),
    *,
    slopes: dict[str, float] | None = None,
    noise: float = 0.01,
    seed: int = 0,
) -> dict:
    """Write a fabricated study (result JSONs and similarity tables) with a planted relationship.

    gain(method, s, t) = slopes[method] * (visual_cosine(s, t) - mean) + noise, baselines in
    [0.4, 0.8]. Writes ``root/{method}/{s}__{t}/seed{k}.json`` and ``root/similarity/{measure}.csv``
    (+ parquet) for the four measures, and returns ``{"similarity": long table, "slopes": ...}``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    n = len(tasks)
    slopes = dict(slopes or {m: 0.3 * (1 if i % 2 == 0 else -1) for i, m in enumerate(methods)})
    emb = rng.normal(size=(n, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    vis = np.clip(emb @ emb.T, -1, 1)
    lab_raw = rng.uniform(0.2, 0.9, size=(n, n))
    lab = (lab_raw + lab_raw.T) / 2
    np.fill_diagonal(lab, 1.0)
    frechet = np.clip(2 - 2 * vis + rng.uniform(0, 0.1, size=(n, n)), 0, None)
    frechet = (frechet + frechet.T) / 2
    np.fill_diagonal(frechet, 0.0)
    lc = rng.uniform(0.5, 0.95, size=(n, n))
    labcos = (lc + lc.T) / 2
    np.fill_diagonal(labcos, 1.0)
    sims = []
    for name, m in (("visual_cosine", vis), ("visual_frechet", frechet), ("label_match", lab), ("label_cosine", labcos)):
        long = pd.DataFrame(
            [(a, b, name, float(m[i, j])) for i, a in enumerate(tasks) for j, b in enumerate(tasks)],
            columns=["task_a", "task_b", "measure", "value"],
        )
        write_table(long, root / "similarity" / name)
        sims.append(long)
    off_mean = vis[~np.eye(n, dtype=bool)].mean()
    base = rng.uniform(0.4, 0.8, size=n)
    for method in methods:
        for i, s in enumerate(tasks):
            for j, t in enumerate(tasks):
                for k in seeds:
                    if s == t:
                        value = base[j] + rng.normal(0, noise)
                    else:
                        value = base[j] + slopes[method] * (vis[i, j] - off_mean) + rng.normal(0, noise)
                    write_record(root, method, s, t, k, test=float(np.clip(value, 0, 1)), val=float(np.clip(value + 0.02, 0, 1)))
    return {"similarity": pd.concat(sims, ignore_index=True), "slopes": slopes}


def write_multitask_record(root, method, mode, group, target, seed, test, sources, **fields) -> Path:
    """A multitask result record where :data:`mvlpt.study.layout.MULTITASK_RESULT` puts it: the record mode
    of the multitask ``mode`` (init: sequential from the group's prompt; joint), source = ``sources``."""
    from mvlpt.transfer.multitask import RECORD_MODE

    path = layout.MULTITASK_RESULT.path(root, method, mode, group, target, seed)
    write_result(make_record(method, "+".join(sources), target, seed, test, mode=RECORD_MODE[mode], **fields), path)
    return path


def write_fake_multitask_study(
    root: str | os.PathLike,
    tasks: Sequence[str] = ("alpha", "beta", "gamma", "delta", "epsilon"),
    methods: Sequence[str] = ("coop", "vpt"),
    seeds: Sequence[int] = (1, 2),
    *,
    strategies: Sequence[str] = ("all", "gain", "similarity", "random"),
    modes: Sequence[str] = ("init", "joint"),
    k: int = 2,
    softcpt: bool = True,
    noise: float = 0.005,
    seed: int = 0,
) -> dict:
    """A fabricated pairwise study (:func:`write_fake_study`, with its tables under ``root/tables``), the
    groups table (``root/multitask/groups.csv``) and a multitask result for every group, target and seed,
    with a planted relationship: a group's test value = the target's baseline (same seed) + the mean
    pairwise gain of its sources on the target (of the baseline method) + noise; SoftCPT gets CoOp's
    plus 0.01. Returns ``{"groups", "pairs"}``."""
    from mvlpt.analysis import tables
    from mvlpt.transfer import grouping

    root = Path(root)
    write_fake_study(root, tasks=tasks, methods=methods, seeds=seeds, seed=seed)
    runs = tables.load_results(root)
    tables.write_collected(runs, root / "tables", methods, tasks)
    pairs = tables.pair_table(runs)
    gain = {m: tables.matrix(pairs, m, "gain", tasks) for m in methods}
    similarity = grouping.read_similarity_matrix(root / "similarity" / "label_match.csv", "label_match", tasks)
    all_methods = list(methods) + (["softcpt"] if softcpt else [])
    groups = grouping.choose_groups(
        tasks, all_methods, strategies, modes, k=k, seed=seed, gain=gain, similarity=similarity, measure="label_match"
    )
    grouping.write_groups(groups, grouping.groups_path(root))
    base = {(r.method, r.target, int(r.seed)): float(r.value) for r in runs[runs["source"] == runs["target"]].itertuples()}
    rng = np.random.default_rng(seed + 1)
    cells = groups.drop_duplicates(["method", "mode", "group", "target"])
    for r in cells.itertuples(index=False):
        bm = vocabulary.METHODS[r.method].baseline or r.method
        sources = r.sources.split("+")
        planted = float(np.mean([gain[bm].loc[s, r.target] for s in sources])) + (0.01 if bm != r.method else 0.0)
        for s in seeds:
            value = float(np.clip(base[(bm, r.target, int(s))] + planted + rng.normal(0, noise), 0, 1))
            write_multitask_record(root, r.method, r.mode, r.group, r.target, s, value, sources)
    return {"groups": groups, "pairs": pairs}


def kill_training_at(monkeypatch, epoch: int):
    """Make every training run raise KeyboardInterrupt when it reaches ``epoch`` (a simulated kill, after
    the resumable state of the epochs before was saved); ``monkeypatch.undo()`` lets runs finish again."""
    from mvlpt.training.train import Trainer

    original = Trainer.train_epoch

    def killed(self, e):
        if e == epoch:
            raise KeyboardInterrupt("simulated kill")
        return original(self, e)

    monkeypatch.setattr(Trainer, "train_epoch", killed)


def one_sentence(run, *needles) -> str:
    """Assert that a CLI run (``rc, lines, err`` of the ``run_mvlpt`` fixture) ended in one user-error sentence
    (exit status 2, one line on stderr, no traceback) matching every regex of ``needles``; return the line."""
    import re

    rc, lines, err = run
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert re.search(needle, lines[0]), (needle, lines[0])
    return lines[0]


# ELEVATER-layout fakes (IRIS txt index), for the data and preflight tests
def colour(cls: int) -> tuple[int, int, int]:
    """A colour that identifies an ELEVATER class id (robust to JPEG)."""
    return ((cls * 47) % 256, (cls * 97 + 60) % 256, (cls * 23 + 120) % 256)


def encode(cls: int, fmt: str = "PNG", size=(12, 12), mode="RGB") -> bytes:
    img = Image.new("RGB", size, colour(cls))
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def truncated_png() -> bytes:
    arr = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()[:300]


def make_iris_task(
    data_dir: Path, task: str, per_class: dict, *, labelmap: list | None = None, corrupt: set = frozenset()
) -> Path:
    """Write ``task`` in ELEVATER's layout (IRIS txt index). ``per_class[split]`` = list of labels
    (ints, or lists for multi-label). Files go where the manifest says."""
    entry = elevater.catalog.manifest_entry(task)
    root = data_dir / entry["root_folder"]
    root.mkdir(parents=True, exist_ok=True)
    zips: dict[str, zipfile.ZipFile] = {}
    for split, labels in per_class.items():
        index, files = entry[split]["index_path"], entry[split]["files_for_local_usage"]
        zname = files[0]
        zf = zips.get(zname) or zipfile.ZipFile(root / zname, "w", compression=zipfile.ZIP_STORED)
        zips[zname] = zf
        lines = []
        for i, lab in enumerate(labels):
            member = f"{split}/{i}.png"
            first = lab[0] if isinstance(lab, list) else lab
            data = truncated_png() if (split, i) in corrupt else encode(first)
            zf.writestr(member, data)
            lab_s = ",".join(map(str, lab)) if isinstance(lab, list) else str(lab)
            lines.append(f"{zname}@{member} {lab_s}")
        (root / index).write_text("\n".join(lines) + "\n")
    for zf in zips.values():
        zf.close()
    if entry.get("labelmap"):
        names = labelmap if labelmap is not None else list(get_task(task).classnames)
        (root / entry["labelmap"]).write_text("\n".join(names) + "\n")
    return root


# a training run spec on the tiny CLIP, for the training tests
TRAIN_TASK = "shape-colours"


def spec(tmp_path, method="coop", tasks=(TRAIN_TASK,), **kw):
    train = kw.pop("train", TrainConfig(epochs=4, lr=0.01, checkpoint_every=2))
    outputs = kw.pop("outputs", {t: str(tmp_path / f"{t}.json") for t in tasks})
    kw.setdefault("pretrained", "synthetic")
    return RunSpec(method=method, tasks=list(tasks), seeds=kw.pop("seeds", [1]), shots=5, train=train, outputs=outputs, **kw)

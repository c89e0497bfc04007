"""Checkpoint selection (issue 22, item 6): train option ``select`` (``best`` with its tie-break, ``last``),
the fields each result records, the resumable state, and the ``selection`` table of ``mvlpt collect``.

* ``best``: highest validation metric; among epochs tied on it the lower validation loss; among those
  still tied the later epoch (:func:`mvlpt.training.train.better`), checked on hand-made cases, against a
  brute-force ordering, and in a real run against the choice computed by hand from every epoch's
  validation values.
* ``last``: the final epoch, for every target of a joint run and for the group prompt.
* A resumed run equals an uninterrupted one, ``val_loss`` and ``select`` included.
"""

import json
import math
import random

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fakes import kill_training_at, make_record, write_record
from mvlpt.analysis import tables
from mvlpt.errors import MvlptError
from mvlpt.study import vocabulary
from mvlpt.training.checkpoints import load_state
from mvlpt.training.config import RunSpec, TrainConfig
from mvlpt.training.train import GROUP, Trainer, better, run, validation_loss

A, B = "shape-colours", "shapes"


def spec(tmp_path, tasks=(A,), method="coop", **kw):
    train = kw.pop("train", TrainConfig(epochs=4, lr=0.01, checkpoint_every=1))
    outputs = kw.pop("outputs", {t: str(tmp_path / f"{t}.json") for t in tasks})
    return RunSpec(
        method=method,
        tasks=list(tasks),
        seeds=kw.pop("seeds", [1]),
        shots=5,
        train=train,
        outputs=outputs,
        pretrained="synthetic",
        **kw,
    )


def provenance(path) -> dict:
    with safe_open(str(path), "pt") as fh:
        return json.loads(fh.metadata()["provenance"])


def entry(metric, loss, epoch):
    return {"metric": metric, "loss": loss, "epoch": epoch}


# --------------------------------------------------------------------------------------------------
# The rule
# --------------------------------------------------------------------------------------------------
def test_better_metric_then_lower_loss_then_later_epoch():
    start = entry(-math.inf, math.inf, -1)
    assert better(entry(0.0, 5.0, 0), start)  # anything beats the empty start
    assert better(entry(0.6, 9.0, 3), entry(0.5, 0.1, 1))  # the metric first, whatever the loss
    assert not better(entry(0.4, 0.1, 3), entry(0.5, 9.0, 1))
    assert better(entry(0.5, 0.7, 3), entry(0.5, 0.8, 1))  # tied metric: the lower loss
    assert not better(entry(0.5, 0.9, 3), entry(0.5, 0.8, 1))
    assert better(entry(0.5, 0.8, 3), entry(0.5, 0.8, 1))  # tied on both: the later epoch
    assert not better(entry(math.nan, 0.0, 3), entry(0.1, 1.0, 1))  # a NaN metric never wins
    assert better(entry(0.5, 1.0, 3), entry(0.5, math.nan, 1))  # a NaN loss counts as infinite
    assert not better(entry(0.5, math.nan, 3), entry(0.5, 1.0, 1))
    assert better(entry(0.5, 1.0, 3), {"metric": 0.5, "epoch": 1})  # an entry without a loss (old state): infinite


def test_sequential_choice_is_the_lexicographic_best():
    """Scanning the epochs with ``better`` picks max over (metric, -loss, epoch), on values with many ties."""
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 12)
        epochs = [entry(rng.choice([0.25, 0.5, 0.75]), rng.choice([0.3, 0.6, 0.9]), e) for e in range(n)]
        best = entry(-math.inf, math.inf, -1)
        for cand in epochs:
            if better(cand, best):
                best = cand
        want = max(epochs, key=lambda c: (c["metric"], -c["loss"], c["epoch"]))
        assert best["epoch"] == want["epoch"]


def test_validation_loss_is_mean_cross_entropy_or_mean_binary_cross_entropy():
    scores = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    hand = (-math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-1))) - math.log(math.e / (2 + math.e))) / 2
    assert validation_loss(scores, np.array([0, 1]), multilabel=False) == pytest.approx(hand, rel=1e-12)
    multi = np.array([[1, 0, 1], [0, 1, 0]])
    sig = 1 / (1 + np.exp(-scores))
    bce = -(multi * np.log(sig) + (1 - multi) * np.log(1 - sig)).mean()
    assert validation_loss(scores, multi, multilabel=True) == pytest.approx(bce, rel=1e-12)
    assert math.isnan(validation_loss(np.zeros((0, 3)), np.zeros(0), multilabel=False))


def test_bad_select_is_one_sentence(tmp_path, run_mvlpt):
    with pytest.raises(MvlptError, match=r"^select must be best or last .*got 'final'\.$"):
        TrainConfig.from_dict({"select": "final"})
    rc, lines, err = run_mvlpt(
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--output",
        f"shapes={tmp_path}/r.json",
        "--device",
        "cpu",
        "--train-options",
        '{"select": "final"}',
    )
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "select must be best or last" in lines[0] and lines[0].count(". ") == 0, lines[0]
    assert not list(tmp_path.iterdir())


def test_select_is_part_of_the_config_hash():
    best = RunSpec(method="coop", tasks=["shapes"], train=TrainConfig(epochs=3))
    last = RunSpec(method="coop", tasks=["shapes"], train=TrainConfig(epochs=3, select="last"))
    assert best.config_hash(1) != last.config_hash(1) and best.setting_hash() != last.setting_hash()


# --------------------------------------------------------------------------------------------------
# In a run
# --------------------------------------------------------------------------------------------------
def _recording(monkeypatch):
    """Record what every epoch's validation gave (per member: task -> (metric, loss))."""
    seen = []
    original = Trainer.validation

    def recorded(self):
        out = original(self)
        seen.append(out)
        return out

    monkeypatch.setattr(Trainer, "validation", recorded)
    return seen


@pytest.mark.slow
def test_best_is_the_epoch_a_hand_computation_picks(tmp_path, monkeypatch):
    """A joint run with a group prompt: every target's and the group's reported epoch is the one picked by hand
    from the recorded validation values, and ``val``/``val_loss`` are that epoch's."""
    seen = _recording(monkeypatch)
    s = spec(
        tmp_path,
        (A, B),
        train=TrainConfig(epochs=6, lr=0.01, checkpoint_every=0),
        seeds=[1, 2],
        outputs={t: str(tmp_path / f"{t}_{{seed}}.json") for t in (A, B)},
        save_group_prompt=str(tmp_path / "g{seed}.safetensors"),
    )
    results = run(s)
    assert len(seen) == 6
    for j, seed in enumerate((1, 2)):
        for name in (A, B, GROUP):
            if name == GROUP:
                values = [(sum(v[j][t][0] for t in (A, B)) / 2, sum(v[j][t][1] for t in (A, B)) / 2) for v in seen]
            else:
                values = [v[j][name] for v in seen]
            # by hand: the highest metric; among those, the lowest loss; among those, the last epoch
            top = max(m for m, _ in values)
            low = min(loss for m, loss in values if m == top)
            want = max(e for e, (m, loss) in enumerate(values) if m == top and loss == low) + 1
            if name == GROUP:
                assert provenance(tmp_path / f"g{seed}.safetensors")["best_epoch"] == want
                continue
            r = next(r for r in results if r["seed"] == seed and r["target"] == name)
            assert (r["best_epoch"], r["val"], r["val_loss"], r["select"]) == (want, top, pytest.approx(low, rel=1e-12), "best")


def test_tied_metrics_go_to_the_lower_loss_then_the_later_epoch(tmp_path, monkeypatch):
    """Scripted validation values: the old rule (first of the tied) would report epoch 1."""
    script = iter([(0.5, 1.0), (0.5, 0.8), (0.5, 0.8), (0.25, 0.1), (0.5, 0.9)])

    def scripted(self):
        metric, loss = next(script)
        return [{A: (metric, loss)}]

    monkeypatch.setattr(Trainer, "validation", scripted)
    prompt = tmp_path / "p.safetensors"
    epochs = []
    original = Trainer.train_epoch

    def remember(self, e):
        loss = original(self, e)
        epochs.append({k: v.detach().clone() for k, v in self.members[0].learner.state_dict().items()})
        return loss

    monkeypatch.setattr(Trainer, "train_epoch", remember)
    r = run(spec(tmp_path, train=TrainConfig(epochs=5, lr=0.01, checkpoint_every=0), save_prompts={A: str(prompt)}))[0]
    assert (r["best_epoch"], r["val"], r["val_loss"]) == (3, 0.5, 0.8)
    saved = load_file(prompt)
    assert all(torch.equal(saved[k], epochs[2][k]) for k in saved), "the saved prompt is epoch 3's"


def test_select_last_reports_the_final_epoch_for_every_target_and_the_group(tmp_path):
    group = tmp_path / "g.safetensors"
    s = spec(
        tmp_path,
        (A, B),
        train=TrainConfig(epochs=4, lr=0.01, checkpoint_every=0, select="last"),
        save_prompts={A: str(tmp_path / "a.safetensors")},
        save_group_prompt=str(group),
    )
    trainer = Trainer(s)
    results = trainer.run()
    final = trainer.members[0].learner.state_dict()
    assert {(r["target"], r["best_epoch"], r["select"]) for r in results} == {(A, 4, "last"), (B, 4, "last")}
    assert all(r["val_loss"] is not None and r["val_loss"] >= 0 for r in results)
    assert provenance(group)["best_epoch"] == 4
    for path in (group, tmp_path / "a.safetensors"):
        saved = load_file(path)
        assert all(torch.equal(saved[k], final[k].cpu()) for k in saved), path


@pytest.mark.parametrize("select", ["best", pytest.param("last", marks=pytest.mark.slow)])  # the fast lane: best
def test_resumed_run_equals_uninterrupted_with_the_new_fields(tmp_path, monkeypatch, select):
    def make(sub, **kw):
        return spec(
            tmp_path / sub,
            (A, B),
            train=TrainConfig(epochs=5, lr=0.01, checkpoint_every=1, select=select),
            save_group_prompt=str(tmp_path / sub / "g.safetensors"),
            **kw,
        )

    full = run(make("full"))
    state = tmp_path / "state.safetensors"
    s = make("resumed", state_path=str(state))
    kill_training_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(s)
    _, meta = load_state(state)
    assert all("loss" in e for e in meta["best"]["1"].values()), "the saved state keeps each best entry's loss"
    monkeypatch.undo()
    resumed = run(s)
    for a, b in zip(full, resumed):
        for key in ("target", "test", "val", "val_loss", "best_epoch", "select", "config_hash"):
            assert a[key] == b[key], key
    ga, gb = load_file(tmp_path / "full" / "g.safetensors"), load_file(tmp_path / "resumed" / "g.safetensors")
    assert all(torch.equal(ga[k], gb[k]) for k in ga)


# --------------------------------------------------------------------------------------------------
# Records and the table
# --------------------------------------------------------------------------------------------------
def test_records_check_select_and_val_loss():
    assert vocabulary.record_problem(make_record(select="last", val_loss=0.3)) is None
    assert vocabulary.record_problem(make_record(val_loss=None)) is None
    assert "select" in vocabulary.record_problem(make_record(select="final"))
    assert "val_loss" in vocabulary.record_problem(make_record(val_loss=-1.0))


def test_selection_table_by_hand(tmp_path):
    # coop on target a: 4 runs with epochs 1, 1, 3, 5 (n_val 12); coop on b: 2 runs, epochs 2 and 5, one
    # written before the option existed (counts as best); vpt on a with select last: epochs 5, 5
    rows = [
        ("coop", "a", "a", 1, 1, "best"),
        ("coop", "b", "a", 1, 1, "best"),
        ("coop", "a", "a", 2, 3, "best"),
        ("coop", "b", "a", 2, 5, "best"),
        ("coop", "b", "b", 1, 2, "best"),
        ("coop", "b", "b", 2, 5, None),
        ("vpt", "a", "a", 1, 5, "last"),
        ("vpt", "a", "a", 2, 5, "last"),
    ]
    for method, source, target, seed, epoch, select in rows:
        extra = {"select": select} if select else {}
        write_record(
            tmp_path / "results", method, source, target, seed, best_epoch=epoch, n_val=12 if target == "a" else 6, **extra
        )
    runs = tables.load_results(tmp_path / "results", allow_mixed_settings=True)
    assert "select" in runs.columns and "val_loss" in runs.columns
    table = tables.selection_table(runs)
    assert list(table.columns) == list(tables.SELECTION_COLUMNS)
    got = {
        (r.method, r.target, r.select): (r.n_runs, r.first_epoch_share, r.median_epoch, r.epochs, r.n_val)
        for r in table.itertuples()
    }
    assert got == {
        ("coop", "a", "best"): (4, 0.5, 2.0, 5, 12.0),
        ("coop", "b", "best"): (2, 0.0, 3.5, 5, 6.0),
        ("vpt", "a", "last"): (2, 0.0, 5.0, 5, 12.0),
    }
    tables.write_collected(runs, tmp_path / "tables")
    back = pd.read_parquet(tmp_path / "tables" / "selection.parquet")
    assert len(back) == 3 and "selection" in vocabulary.TABLE_NAMES
    assert tables.selection_table(runs.iloc[0:0]).empty


def test_bad_select_in_the_config_stops_the_workflow_before_any_job(tmp_path):
    import yaml

    from studies import REPO, snakemake

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["train"] = {**(cfg.get("train") or {}), "select": "final"}
    configfile = tmp_path / "bad.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "--cores", "1", configfile=configfile)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    sentence = next(line for line in out.splitlines() if line.startswith("invalid config:"))
    assert "train: select must be best or last" in sentence and sentence.endswith("."), sentence
    assert not (tmp_path / "results").exists()

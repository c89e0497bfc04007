"""Hostile inputs, second round (issue 24), classes 3, 4 and 5: tables built from the records, not
from an index; NaN and degenerate numbers refused by each reader and statistic; ``--strict`` and
preflight checking what they say. Each test tries members of its class, not one case. Property tests
of the readers: tests/robustness/test_readers_property_tables.py. docs/reliability.md states the rules."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from fakes import one_sentence, write_multitask_record, write_record
from mvlpt.errors import MvlptError
from mvlpt.study import vocabulary
from mvlpt.transfer import grouping, multitask

TASKS = ["a", "b", "c"]


# --------------------------------------------------------------------------------------------------
# Class 3: tables trust the records, an index that contradicts them is refused
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def mt_study(tmp_path):
    root = tmp_path / "results"
    for i, t in enumerate(TASKS):
        for seed in (1, 2):
            write_record(root, "coop", t, t, seed, test=0.5 + 0.05 * i)
    groups = grouping.choose_groups(TASKS, ["coop", "softcpt"], ["all"], ["init", "joint"], k=2)
    for j, r in enumerate(groups.itertuples(index=False)):
        for seed in (1, 2):
            write_multitask_record(root, r.method, r.mode, r.group, r.target, seed, 0.6 + 0.03 * j, r.sources.split("+"))
    path = tmp_path / "groups.csv"
    grouping.write_groups(groups, path)
    return root, groups, path


def table_run(run_mvlpt, root, groups_path, tmp_path):
    return run_mvlpt(
        "multitask",
        "table",
        "--results-dir",
        root,
        "--groups",
        groups_path,
        "--n-boot",
        "50",
        "--out",
        tmp_path / "t" / "mt.csv",
        "--summary-out",
        tmp_path / "t" / "sum.csv",
    )


def test_class3_valid_index_gives_records_sources(mt_study, tmp_path, run_mvlpt):
    root, groups, path = mt_study
    assert table_run(run_mvlpt, root, path, tmp_path).rc == 0
    table = multitask.collect(root, grouping.read_groups(path))
    assert len(table) == len(groups) and not table.duplicated(["method", "mode", "strategy", "target"]).any()


@pytest.mark.parametrize(
    "edit",
    [
        "duplicate_row",
        "duplicate_softcpt",
        "other_sources",
        "other_group_consistent",
        "group_id_edited",
        "k_edited",
        "target_in_sources",
        "tasks_edited",
        "strategy_edited",
        "method_unknown",
        "all_lacks_a_source",
    ],
)
def test_class3_contradicting_index_is_one_sentence(mt_study, tmp_path, run_mvlpt, edit):
    root, groups, path = mt_study
    g = groups.copy()
    i = int(np.flatnonzero((g["method"] == "coop") & (g["mode"] == "init") & (g["target"] == "a"))[0])
    if edit == "duplicate_row":
        g = pd.concat([g, g.iloc[[i]]], ignore_index=True)
    elif edit == "duplicate_softcpt":  # the 4.72 -> 6.04 points of the issue: one SoftCPT target twice
        g = pd.concat([g, g[g["method"] == "softcpt"].iloc[[0]]], ignore_index=True)
    elif edit == "other_sources":  # the row names target b's sources but keeps a's group id
        g.loc[i, "sources"] = "a+c"
    elif edit == "other_group_consistent":  # the index is right, but the result files in its group's
        # folder were trained with other sources (b only): the records, not the index, say what they are
        for seed in (1, 2):
            write_multitask_record(root, "coop", "init", g.loc[i, "group"], "a", seed, 0.7, ["b"])
    elif edit == "group_id_edited":
        g.loc[i, "group"] = vocabulary.group_id(["c"])
    elif edit == "k_edited":
        g.loc[i, "k"] = 7
    elif edit == "target_in_sources":
        g.loc[i, ["sources", "tasks"]] = ["a+b", "a+b"]
    elif edit == "tasks_edited":
        g.loc[i, "tasks"] = "b"
    elif edit == "strategy_edited":  # a result relabelled as another strategy's (SoftCPT has strategy all only)
        g.loc[g.index[g["method"] == "softcpt"][0], "strategy"] = "gain"
    elif edit == "method_unknown":
        g.loc[i, "method"] = "coop2"
    elif edit == "all_lacks_a_source":  # strategy all with sources b only (a self-consistent row otherwise)
        g.loc[i, ["group", "tasks", "sources", "k"]] = [vocabulary.group_id(["b"]), "b", "b", 1]
    bad = tmp_path / "bad.csv"
    g.to_csv(bad, index=False)
    one_sentence(
        table_run(run_mvlpt, root, bad, tmp_path),
        "trained with the sources 'b'" if edit == "other_group_consistent" else "groups table",
    )
    assert not (tmp_path / "t").exists()  # nothing written
    with pytest.raises(MvlptError):
        multitask.collect(root, g)  # the same rule for a DataFrame given directly


def test_class3_summary_refuses_duplicated_targets(mt_study):
    root, groups, _ = mt_study
    table = multitask.collect(root, groups)
    with pytest.raises(MvlptError, match="count twice"):
        multitask.summarize(pd.concat([table, table.iloc[[0]]]), n_boot=20)


# --------------------------------------------------------------------------------------------------
# Class 4: NaN and degenerate numbers are refused by the reader or statistic that meets them
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("at", ["last_step", "first_step"])
def test_class4_blow_up_on_any_step_is_caught(tmp_path, monkeypatch, at):
    """A step's loss is computed before its update: a blow-up on the last update shows in no loss, so
    the learned parameters are checked after every epoch."""
    import torch

    from fakes import TRAIN_TASK as A, spec
    from mvlpt.training.config import TrainConfig
    from mvlpt.training.train import Trainer, run

    original = Trainer.train_step
    calls = []

    def poisoned(self, batch):
        out = original(self, batch)
        calls.append(1)
        if at == "first_step" or len(calls) == len(self.epoch_plan(0)):
            with torch.no_grad():
                for m in self.members:
                    for p in m.learner.parameters():
                        if p.requires_grad:
                            p.fill_(float("nan"))
        return out

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    s = spec(tmp_path, "coop", (A,), train=TrainConfig(epochs=1, warmup_epochs=0))
    with pytest.raises(MvlptError, match="prompt became non-finite" if at == "last_step" else "non-finite|loss became"):
        run(s)
    assert not (tmp_path / f"{A}.json").exists()


def _emb(tmp_path, features, names=None, kind="images", task="a"):
    from mvlpt.io import write_npz

    features = np.asarray(features)
    names = [f"i{i}" for i in range(len(features))] if names is None else names
    return write_npz(
        tmp_path / f"{task}_{kind}.npz",
        {"task": task, "kind": kind, "format": _emb_format()},
        features=features,
        names=np.asarray(names, dtype=str),
    )


def _emb_format():
    from mvlpt.analysis.similarity import EMBEDDING_FORMAT

    return EMBEDDING_FORMAT


@pytest.mark.parametrize("damage", ["nan", "inf", "empty", "no_columns", "one_d", "names_short", "strings", "kind"])
def test_class4_embedding_reader_refuses_outside_its_domain(tmp_path, damage):
    from mvlpt.analysis.similarity import load_embeddings

    good = np.eye(3, 4, dtype=np.float32)
    f = {
        "nan": np.where(good == 1, np.nan, good),
        "inf": np.where(good == 1, np.inf, good),
        "empty": np.zeros((0, 4), np.float32),
        "no_columns": np.zeros((3, 0), np.float32),
        "one_d": good[0],
        "names_short": good,
        "strings": np.array([["x"] * 4] * 3),
        "kind": good,
    }[damage]
    names = ["i0"] if damage == "names_short" else [f"i{i}" for i in range(len(np.atleast_1d(f)))]
    path = _emb(tmp_path, f, names, kind="banana" if damage == "kind" else "images")
    with pytest.raises(MvlptError) as e:
        load_embeddings(path)
    assert "\n" not in str(e.value) and str(e.value).startswith("embedding file")
    assert load_embeddings(_emb(tmp_path, good)).features.shape == (3, 4)


@pytest.mark.parametrize("damage", ["nan", "empty", "labels_negative", "labels_float", "seeds_short"])
def test_class4_fewshot_reader_refuses_outside_its_domain(tmp_path, damage):
    from mvlpt.io import write_npz
    from mvlpt.transfer.fewshot_features import FEWSHOT_FORMAT, load_fewshot

    n = 0 if damage == "empty" else 4
    f = np.ones((n, 3), np.float32)
    if damage == "nan":
        f[1, 1] = np.nan
    labels = np.arange(n) - (5 if damage == "labels_negative" else 0)
    labels = labels + 0.5 if damage == "labels_float" else labels
    seeds = np.ones(n - 1 if damage == "seeds_short" else n, np.int64)
    path = write_npz(
        tmp_path / "a.npz",
        {"task": "a", "kind": "fewshot", "format": FEWSHOT_FORMAT},
        features=f,
        labels=labels,
        seeds=seeds,
        ids=np.asarray([f"i{i}" for i in range(n)], dtype=str),
    )
    with pytest.raises(MvlptError, match="few-shot embedding file"):
        load_fewshot(path)


@pytest.mark.parametrize(
    "args",
    [
        ("--n-boot", "0"),
        ("--n-boot", "-3"),
        ("--n-perm", "0"),
        ("--n-boot", "9"),
        ("--level", "0"),
        ("--level", "1"),
        ("--level", "1.5"),
        ("--level", "nan"),
        ("--level", "-0.95"),
        ("--level", "inf"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ("correlate", "--pairs", "p.csv", "--similarity", "s.csv", "--out", "o.csv"),
        ("multitask", "table", "--groups", "g.csv"),
        ("predict", "score", "--pairs", "p.csv", "--predictors", "x.csv", "--out", "o.csv"),
    ],
)
def test_class4_statistics_settings_have_one_domain(run_mvlpt, command, args):
    if args[0] == "--n-perm" and command[0] != "correlate":
        args = ("--n-boot", "0")
    one_sentence(run_mvlpt(*command, *args), re.escape(args[0]))


def _pairs_with_gains(gains: dict[tuple[str, str], float]) -> pd.DataFrame:
    rows = [
        {
            "method": "coop",
            "source": s,
            "target": t,
            "gain": g,
            "gain_rel": g,
            "mean": 0.5 + g,
            "baseline_mean": 0.5,
            "is_baseline": False,
        }
        for (s, t), g in gains.items()
    ]
    rows += [
        {
            "method": "coop",
            "source": t,
            "target": t,
            "gain": 0.0,
            "gain_rel": 0.0,
            "mean": 0.5,
            "baseline_mean": 0.5,
            "is_baseline": True,
        }
        for t in {t for _, t in gains}
    ]
    return pd.DataFrame(rows)


def test_class4_tied_best_sources_are_reported_and_order_free():
    from mvlpt.analysis import tables

    gains = {("b", "a"): 0.7 - 0.6, ("c", "a"): 0.1, ("d", "a"): 0.05, ("a", "b"): 0.2, ("c", "b"): 0.1}
    pairs = _pairs_with_gains(gains)
    outs = [tables.best_source(pairs.sample(frac=1, random_state=k)).set_index("target") for k in range(6)]
    for out in outs[1:]:
        pd.testing.assert_frame_equal(out, outs[0])
    best = outs[0]
    assert best.loc["a", "n_best"] == 2 and best.loc["a", "tied_sources"] == "b,c" and best.loc["a", "best_source"] == "b"
    assert best.loc["b", "n_best"] == 1 and best.loc["b", "tied_sources"] == "" and best.loc["b", "best_source"] == "a"


@pytest.mark.parametrize("keep", [4, 12, 29])
def test_class4_groundtruth_on_an_incomplete_study_is_not_scored(tmp_path, run_mvlpt, keep):
    from mvlpt.analysis import groundtruth
    from mvlpt.tasks import designed

    tasks = list(designed.SUITE)
    gains = {(s, t): designed.relatedness(s, t) for t in tasks for s in tasks if s != t}
    pairs = _pairs_with_gains(dict(list(gains.items())[:keep]))
    pairs = pd.concat([pairs, _pairs_with_gains({(t, t): 0.0 for t in tasks}).query("is_baseline")])
    with pytest.raises(MvlptError, match=f"{keep} of the {len(gains)} off-diagonal pairs"):
        groundtruth.recovery(pairs)
    path = tmp_path / "pairs.csv"
    pairs.to_csv(path, index=False)
    one_sentence(run_mvlpt("groundtruth", "--pairs", path), "not|complete study")
    assert groundtruth.recovery(_pairs_with_gains(gains)).loc[0, "recovered"]


@pytest.mark.parametrize(
    "content", [",a,b\n", ",a,b\na,1,inf\nb,2,3\n", ",a,a\na,1,2\nb,2,3\n", ",a,b\na,1,2\na,2,3\n", ",a,b\na,1,x\nb,2,3\n", ""]
)
def test_class4_matrix_reader_refuses_outside_its_domain(tmp_path, content):
    from mvlpt.analysis import tables

    path = tmp_path / "m.csv"
    path.write_text(content)
    with pytest.raises(MvlptError) as e:
        tables.read_matrix(path)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------------------------------
# Class 5: --strict and preflight check what they say
# --------------------------------------------------------------------------------------------------
def test_class5_collect_strict_checks_without_the_three_options(tmp_path, run_mvlpt):
    root = tmp_path / "results"
    for m in ("coop", "vpt"):
        for s in ("a", "b"):
            for t in ("a", "b"):
                for seed in (1, 2):
                    if (m, s, t, seed) != ("vpt", "a", "b", 2):  # one hole
                        write_record(root, m, s, t, seed, test=0.5)
    out = tmp_path / "tables"
    one_sentence(
        run_mvlpt("collect", "--results-dir", root, "--out-dir", out, "--strict"),
        r"1 of 16 expected results are missing",
        "found on disk",
    )
    one_sentence(
        run_mvlpt("collect", "--results-dir", root, "--out-dir", out, "--strict", "--methods", "vpt"),
        r"1 of 8 expected",
        "1 methods given",
    )
    assert not out.exists()
    rc, errors, err = run_mvlpt("collect", "--results-dir", root, "--out-dir", out, "--strict", "--methods", "coop")
    assert rc == 0 and "all 8 results present" in err


SYNTH = {
    "tasks": ["shapes", "shape-colours"],
    "methods": ["coop"],
    "seeds": [1],
    "shots": 2,
    "model": {"name": "mvlpt-tiny", "pretrained": "synthetic"},
    "train": {"epochs": 1},
}


def _cfg(tmp_path, **over):
    return {**SYNTH, "results_dir": str(tmp_path / "results"), "cache_dir": str(tmp_path / "cache"), **over}


@pytest.mark.parametrize(
    "over,needle",
    [
        ({"seeds": []}, "seeds"),
        ({"seeds": [-1]}, "seeds"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"tasks": ["shapes", "shapes"]}, "tasks"),
        ({"device": "tpu"}, "device"),
        ({"methods": ["coop", "coop"]}, "methods"),
        ({"multitask": {"strategies": ["all", "all"]}}, "strategies"),
        ({"analysis": {"n_boot": 0}}, "n_boot"),
        ({"analysis": {"level": 1.5}}, "level"),
        ({"shots": 0}, "shots"),
        ({"bogus": 1}, "bogus"),
        ({"tasks": ["no-such-task"]}, "no-such-task"),
    ],
)
def test_class5_preflight_applies_the_workflows_rules(tmp_path, over, needle):
    from mvlpt.running import preflight
    from mvlpt.study.configcheck import rule_problems

    cfg = _cfg(tmp_path, **over)
    workflow = rule_problems(dict(cfg), multitask="multitask" in over)
    assert workflow and needle in " ".join(workflow)  # the workflow's check_config refuses it ...
    rep = preflight.run(cfg)
    assert not rep.ok and needle in " ".join(rep.problems)  # ... and so does preflight, with its sentence
    assert all(p.endswith(".") and "\n" not in p for p in rep.problems)


def test_class5_preflight_sees_a_results_folder_it_cannot_write(tmp_path):
    import os

    from mvlpt.running import preflight

    (tmp_path / "file").write_text("x")
    for results in (tmp_path / "file", tmp_path / "file" / "sub"):
        rep = preflight.run(_cfg(tmp_path, results_dir=str(results)))
        assert any("is a file" in p or "lies under a file" in p for p in rep.problems), rep.problems
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        rep = preflight.run(_cfg(tmp_path, results_dir=str(ro / "results")))
        assert any("read-only" in p for p in rep.problems), rep.problems


def test_class5_preflight_cli_yaml_line_and_missing_profile(tmp_path, run_mvlpt):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [shapes\nseeds: [1]\n")
    one_sentence(run_mvlpt("preflight", "--configfile", bad, "--json", tmp_path / "r.json"), r"line \d+, column \d+")
    good = tmp_path / "good.yaml"
    import yaml

    good.write_text(yaml.safe_dump(_cfg(tmp_path)))
    one_sentence(
        run_mvlpt("preflight", "--configfile", good, "--json", tmp_path / "r.json", "--profile", tmp_path / "no-such-profile"),
        "SLURM profile .* does not exist",
    )
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00tasks")
    one_sentence(run_mvlpt("preflight", "--configfile", binary, "--json", tmp_path / "r.json"), "UTF-8|YAML")

"""The budgeted study's rounds (mvlpt.transfer.budget_rounds): a round reads only the cells the earlier rounds
chose, the outputs record which round measured each cell and what the completion said after every round."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fakes import write_record
from mvlpt.cli import main
from mvlpt.errors import MvlptError
from mvlpt.study import budget, layout
from mvlpt.transfer import budget_rounds

TASKS = ["t1", "t2", "t3", "t4", "t5", "t6"]
SEEDS = [1, 2]


@pytest.fixture
def full_study(tmp_path):
    """Every result of a 6-task study (all pairs, two seeds), gains with row and column structure."""
    rng = np.random.default_rng(1)
    src, tgt = rng.normal(0, 0.05, 6), rng.normal(0, 0.03, 6)
    for i, s in enumerate(TASKS):
        for j, t in enumerate(TASKS):
            for seed in SEEDS:
                base = 0.5 + 0.02 * j
                value = base if i == j else base + src[i] + tgt[j]
                write_record(tmp_path, "coop", s, t, seed, test=float(value + rng.normal(0, 0.002)))
    return tmp_path


def test_a_round_reads_only_the_cells_the_rounds_chose(full_study):
    cells = [("t1", "t2"), ("t2", "t1"), ("t3", "t6")]
    measured, base = budget_rounds.measured_gains(full_study, "coop", TASKS, SEEDS, cells)
    assert sorted(zip(measured["source"], measured["target"])) == sorted(cells)  # not the other 27 on disk
    assert (measured["n_seeds"] == 2).all() and (measured["gain_se"] > 0).all()
    assert list(base.index) == TASKS and base.notna().all()


def test_a_missing_result_is_one_sentence(full_study):
    layout.RESULT.path(full_study, "coop", "t3", "t6", 2).unlink()
    with pytest.raises(
        MvlptError, match=r"the pair t3 -> t6, which a budget round chose, of coop has no result .*seed2.json; run"
    ):
        budget_rounds.measured_gains(full_study, "coop", TASKS, SEEDS, [("t3", "t6")])
    layout.RESULT.path(full_study, "coop", "t4", "t4", 1).unlink()
    with pytest.raises(MvlptError, match="the baseline of coop has no result"):
        budget_rounds.measured_gains(full_study, "coop", TASKS, SEEDS, [])


def test_a_later_round_needs_every_round_before_it(full_study):
    with pytest.raises(MvlptError, match="round 2 needs the files of the 2 round"):
        budget_rounds.select_round(
            full_study, "coop", TASKS, SEEDS, 2, 3, [], symmetric=True, rule="uncertainty", seed=0, level=0.9
        )


def rounds_of(tmp_path, symmetric=True, sizes=(4, 2, 2), rule="uncertainty"):
    """Three rounds chosen the way the workflow chooses them (each from the completion of those before)."""
    files = []
    for r, k in enumerate(sizes):
        pairs = budget_rounds.select_round(
            tmp_path, "coop", TASKS, SEEDS, r, k, files, symmetric=symmetric, rule=rule, seed=0, level=0.9
        )
        files.append(budget.write_round(pairs, r, layout.BUDGET_ROUND.path(tmp_path / "budget", "coop", r)))
    return files


@pytest.mark.parametrize("symmetric, rule", [(True, "uncertainty"), (False, "improvement"), (True, "random")])
def test_rounds_choose_new_pairs_and_the_outputs_say_which_round_measured_what(full_study, symmetric, rule):
    files = rounds_of(full_study, symmetric, rule=rule)
    lists = [budget.read_round(f) for f in files]
    assert [len(x) for x in lists] == [4, 2, 2]
    cells = [budget.cells_of(x, symmetric) for x in lists]
    assert len(set().union(*map(set, cells))) == sum(map(len, cells))  # no cell chosen twice
    if symmetric:
        assert all(TASKS.index(a) < TASKS.index(b) for x in lists for a, b in x)  # train_joint's order
    # the last round trains only the first of its list
    out = budget_rounds.complete_rounds(
        full_study, "coop", TASKS, SEEDS, files, [4, 2, 1], symmetric=symmetric, level=0.9, seed=0
    )
    per = 2 if symmetric else 1
    progress, completed = out["progress"], out["completed"]
    assert progress["pairs"].tolist() == [4, 6, 7] and progress["cells"].tolist() == [4 * per, 6 * per, 7 * per]
    assert progress["share"].iloc[-1] == pytest.approx(7 / (15 if symmetric else 30))
    assert progress["agree_final"].iloc[-1] == 1.0 and progress["certain"].between(0, 1).all()
    assert len(completed) == 30 and int(completed["measured"].sum()) == 7 * per
    rounds = completed.dropna(subset=["round"]).set_index(["source", "target"])["round"]
    for r, x in enumerate(cells):
        for cell in x[: (len(x) if r < 2 else per)]:
            assert rounds[cell] == r
    assert set(lists[2][1:]).isdisjoint(map(tuple, completed.loc[completed["measured"], ["source", "target"]].to_numpy()))
    best = out["best_source"]
    assert sorted(best["target"]) == TASKS and best["top3"].str.count(",").eq(2).all()


def test_complete_writes_the_tables_and_figures(full_study):
    files = rounds_of(full_study)
    args = ["budget", "complete", "--results-dir", str(full_study), "--method", "coop", "--tasks", *TASKS, "--seeds", "1", "2"]
    args += ["--mode", "joint", "--rounds", *map(str, files), "--sizes", "4", "2", "2", "--out-dir", str(full_study / "budget")]
    assert main(args) == 0
    bdir = full_study / "budget"
    for name in ("completed", "best_source", "progress"):
        for ext in ("csv", "parquet"):
            assert layout.BUDGET_TABLE.path(bdir, "coop", name, ext).stat().st_size > 0
    for name in ("completed", "progress"):
        for ext in ("png", "pdf"):
            assert layout.BUDGET_FIGURE.path(bdir, "coop", name, ext).stat().st_size > 0
    progress = pd.read_csv(layout.BUDGET_TABLE.path(bdir, "coop", "progress", "csv"))
    assert progress["round"].tolist() == [0, 1, 2]
    # a size list that does not match the round files is refused, and nothing is written
    layout.BUDGET_TABLE.path(bdir, "coop", "completed", "csv").unlink()
    assert main(args[:-6] + ["--sizes", "4", "2", "--out-dir", str(bdir)]) == 2
    assert not layout.BUDGET_TABLE.path(bdir, "coop", "completed", "csv").exists()


def test_side_information_reaches_the_completion(tmp_path):
    """--side baseline and MEASURE=FILE: the completion sees the baselines and the similarity matrix."""
    from fakes import write_fake_study

    tasks = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    write_fake_study(tmp_path, tasks=tasks, methods=("coop",), seeds=(1, 2))
    sim = layout.SIMILARITY.path(tmp_path / "similarity", "visual_cosine", "csv")
    specs = budget_rounds.parse_side(["baseline", f"visual_cosine={sim}"])
    assert specs == [("baseline", None), ("visual_cosine", str(sim))]
    _, base = budget_rounds.measured_gains(tmp_path, "coop", tasks, [1, 2], [])
    side = budget_rounds.read_side(specs, tasks, base)
    assert set(side) == {"baseline", "similarity:visual_cosine"}
    assert list(side["similarity:visual_cosine"].index) == tasks
    files = []
    for r, k in enumerate((4, 2)):
        pairs = budget_rounds.select_round(
            tmp_path, "coop", tasks, [1, 2], r, k, files, symmetric=True, rule="improvement", seed=0, level=0.9, side=specs
        )
        files.append(budget.write_round(pairs, r, layout.BUDGET_ROUND.path(tmp_path / "budget", "coop", r)))
    out = budget_rounds.complete_rounds(
        tmp_path, "coop", tasks, [1, 2], files, [4, 2], symmetric=True, level=0.9, seed=0, side=specs
    )
    assert out["progress"]["pairs"].tolist() == [4, 6]
    with pytest.raises(MvlptError, match="side information visual_cosine needs its file"):
        budget_rounds.parse_side(["visual_cosine"])
    with pytest.raises(MvlptError, match="unknown side information 'oracle=x.csv'"):
        budget_rounds.parse_side(["oracle=x.csv"])

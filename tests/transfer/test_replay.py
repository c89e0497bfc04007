"""The replay of a budgeted study (mvlpt.transfer.replay, ``mvlpt budget replay``): scores that mean
what they say, trajectories that spend exactly the budget, the command end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mvlpt.cli import main
from mvlpt.transfer import planted, replay


def truth_table():
    cells = [("a", "b", 0.3), ("c", "b", 0.1), ("d", "b", 0.0), ("b", "a", 0.2), ("c", "a", 0.5), ("d", "a", -0.1)]
    return pd.DataFrame(cells, columns=["source", "target", "gain"])


def as_completed(truth, gain, measured=False, sd=0.01):
    out = truth[["source", "target"]].copy()
    out["gain"], out["sd"] = gain, sd
    out["lo"], out["hi"] = out["gain"] - 2 * sd, out["gain"] + 2 * sd
    out["measured"] = measured
    return out


def test_scores_of_a_perfect_and_of_a_reversed_completion():
    truth = truth_table()
    perfect = replay.score(as_completed(truth, truth["gain"]), truth)
    assert perfect["spearman"] == pytest.approx(1) and perfect["within_target"] == pytest.approx(1)
    assert perfect["top1"] == 1 and perfect["top3"] == 1 and perfect["regret"] == 0 and perfect["coverage"] == 1
    flipped = replay.score(as_completed(truth, -truth["gain"]), truth)
    assert flipped["within_target"] == pytest.approx(-1) and flipped["top1"] == 0
    # predicted best of b is d (truth 0.0, best 0.3), of a is d (truth -0.1, best 0.5): regret 0.3 and 0.6
    assert flipped["regret"] == pytest.approx(0.45)
    assert flipped["coverage"] == pytest.approx(1 / 6)  # only d -> b (gain 0) lies in its flipped interval
    assert flipped["top3"] == 1  # three sources per target: the best is always among the three


def test_a_trajectory_spends_exactly_each_budget_and_ends_knowing_everything():
    pairs = planted.planted_pairs("effects", 8, seed=0)
    tasks = planted.task_names(8)
    rows = replay.trajectory(pairs, tasks, rule="uncertainty", model="completion", budgets=(0.25, 0.5, 1.0), round_size=3)
    assert [r["trained"] for r in rows] == [14, 28, 56]
    assert [r["measured"] for r in rows] == [14, 28, 56]
    assert rows[-1]["spearman"] == pytest.approx(1) and rows[-1]["top1"] == 1 and np.isnan(rows[-1]["coverage"])
    assert rows[1]["spearman"] > 0.8  # an effects-only matrix is easy from half its cells


def test_symmetric_trajectories_count_joint_runs_and_reveal_both_directions():
    pairs = planted.planted_pairs("lowrank", 6, seed=1)
    rows = replay.trajectory(
        pairs, planted.task_names(6), rule="improvement", model="effects", budgets=(0.4, 1.0), symmetric=True
    )
    assert [r["trained"] for r in rows] == [6, 15]  # 15 unordered pairs
    assert [r["measured"] for r in rows] == [12, 30]


def test_adaptive_rules_beat_nothing_and_structure_beats_noise():
    eff = replay.summary(replay.replay(planted.planted_pairs("effects", 12, seed=2), budgets=(0.4,), reps=2, rules=("random",)))
    noise = replay.summary(replay.replay(planted.planted_pairs("noise", 12, seed=2), budgets=(0.4,), reps=2, rules=("random",)))
    assert (eff["spearman"] > 0.85).all()
    assert (noise["spearman_hidden"].abs() < 0.3).all()  # nothing to find, nothing found
    assert (noise["width"] > 2 * eff["width"]).all()  # and the intervals say so


def test_cli_replay_end_to_end_on_a_small_synthetic_matrix(tmp_path, capsys):
    out = tmp_path / "replay" / "lowrank.csv"
    fig = tmp_path / "replay" / "lowrank.png"
    args = [
        "budget",
        "replay",
        "--synthetic",
        "lowrank",
        "--tasks",
        "6",
        "--reps",
        "2",
        "--budgets",
        "0.4",
        "1.0",
        "--round-size",
        "9",
    ]
    assert main([*args, "--rules", "random", "uncertainty", "--out", str(out), "--figure", str(fig)]) == 0
    table = pd.read_csv(out)
    reps = pd.read_csv(tmp_path / "replay" / "lowrank_reps.csv")
    assert fig.exists() and fig.with_suffix(".pdf").exists()
    assert set(table["rule"]) == {"random", "uncertainty"} and set(table["model"]) == set(replay.MODELS)
    assert len(table) == 2 * 2 * 2 and (table["reps"] == 2).all()
    assert len(reps) == 2 * 2 * 2 * 2 and set(reps["study"]) == {"synthetic-lowrank"}
    full = table[table["budget"] == 1.0]
    assert (full["spearman"] == 1).all() and (full["top1"] == 1).all() and (full["regret"] == 0).all()
    for metric in replay.METRICS:
        assert f"{metric}_sd" in table.columns
    assert "spearman" in capsys.readouterr().out


def test_cli_replay_reads_a_measured_pair_table(tmp_path):
    pairs = pd.concat([planted.planted_pairs("effects", 5, seed=s, method=m) for s, m in ((0, "coop"), (1, "vpt"))])
    diag = pd.DataFrame({"method": "coop", "source": ["t00"], "target": ["t00"], "gain": [0.0], "is_baseline": [True]})
    path = tmp_path / "results" / "tables" / "pairs.csv"
    path.parent.mkdir(parents=True)
    pd.concat([pairs, diag]).to_csv(path, index=False)
    out = tmp_path / "out.csv"
    assert (
        main(["budget", "replay", "--pairs", str(path), "--methods", "vpt", "--reps", "1", "--budgets", "0.5", "--out", str(out)])
        == 0
    )
    table = pd.read_csv(out)
    assert set(table["method"]) == {"vpt"} and (table["trained"] == 10).all()


def test_cli_replay_errors_are_one_sentence(tmp_path, capsys):
    out = str(tmp_path / "x.csv")
    assert main(["budget", "replay", "--out", out]) == 2
    assert "either --pairs" in capsys.readouterr().err
    assert main(["budget", "replay", "--pairs", str(tmp_path / "none.parquet"), "--out", out]) == 2
    assert "no pair table" in capsys.readouterr().err
    assert main(["budget", "replay", "--synthetic", "noise", "--tasks", "5", "--budgets", "1.5", "--out", out]) == 2
    assert "share of the pairs" in capsys.readouterr().err
    assert main(["budget", "replay", "--synthetic", "noise", "--tasks", "5", "--round-size", "0", "--out", out]) == 2
    assert "at least one pair" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()

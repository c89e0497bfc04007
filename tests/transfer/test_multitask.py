"""The multitask study's tables and figure (mvlpt.transfer.multitask): hand computations on fabricated result files."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from fakes import write_fake_multitask_study, write_multitask_record, write_record
from mvlpt.cli import main
from mvlpt.errors import MvlptError
from mvlpt.study import layout, settings, vocabulary
from mvlpt.transfer import grouping, multitask

TASKS = ["a", "b"]


@pytest.fixture
def small(tmp_path):
    """Two tasks, CoOp baselines and CoOp + SoftCPT multitask results (strategy all) with known values."""
    root = tmp_path / "results"
    for t, values in (("a", (0.50, 0.60)), ("b", (0.70, 0.80))):
        for seed, v in zip((1, 2), values):
            write_record(root, "coop", t, t, seed, test=v)
    groups = grouping.choose_groups(TASKS, ["coop", "softcpt"], ["all"], ["init", "joint"], k=1)
    values = {
        ("coop", "init", "a"): (0.62, 0.66),
        ("coop", "init", "b"): (0.70, 0.74),
        ("coop", "joint", "a"): (0.58, 0.58),
        ("coop", "joint", "b"): (0.80, 0.90),
        ("softcpt", "joint", "a"): (0.56, 0.60),
        ("softcpt", "joint", "b"): (0.76, 0.78),
    }
    for r in groups.itertuples(index=False):
        for seed, v in zip((1, 2), values[(r.method, r.mode, r.target)]):
            write_multitask_record(root, r.method, r.mode, r.group, r.target, seed, v, r.sources.split("+"))
    return root, groups, values


def sd(x, y):
    return math.sqrt(((x - y) / 2) ** 2 * 2)  # ddof=1 std of two values


def test_table_means_stds_and_gains_by_hand(small):
    root, groups, values = small
    table = multitask.collect(root, groups, tasks=TASKS)
    assert list(table.columns) == list(multitask.TABLE_COLUMNS)
    assert list(zip(table["method"], table["mode"], table["target"])) == [
        ("coop", "init", "a"),
        ("coop", "init", "b"),
        ("coop", "joint", "a"),
        ("coop", "joint", "b"),
        ("softcpt", "joint", "a"),
        ("softcpt", "joint", "b"),
    ]
    base = {"a": (0.50, 0.60), "b": (0.70, 0.80)}
    for r in table.itertuples(index=False):
        x, y = values[(r.method, r.mode, r.target)]
        assert r.n_seeds == 2 and r.baseline_method == "coop"
        assert r.test_mean == pytest.approx((x + y) / 2)
        assert r.test_std == pytest.approx(sd(x, y))
        assert r.baseline_mean == pytest.approx(sum(base[r.target]) / 2)
        assert r.baseline_std == pytest.approx(sd(*base[r.target]))
        assert r.gain == pytest.approx((x + y) / 2 - sum(base[r.target]) / 2)
    init_a = table[(table["mode"] == "init") & (table["target"] == "a")].iloc[0]
    assert init_a["sources"] == "b" and init_a["group"] == vocabulary.group_id(["b"])
    joint_a = table[(table["method"] == "softcpt") & (table["target"] == "a")].iloc[0]
    assert joint_a["group"] == vocabulary.group_id(TASKS) and joint_a["sources"] == "b"


def test_summary_means_in_points_ci_and_paper_column(small):
    root, groups, values = small
    table = multitask.collect(root, groups, tasks=TASKS)
    summary = multitask.summarize(table, n_boot=500, seed=0)
    assert list(summary.columns) == list(multitask.SUMMARY_COLUMNS)
    coop_init = summary[(summary["method"] == "coop") & (summary["mode"] == "init")].iloc[0]
    gains = [(0.62 + 0.66) / 2 - 0.55, (0.70 + 0.74) / 2 - 0.75]
    assert coop_init["n_targets"] == 2
    assert coop_init["gain_mean_pts"] == pytest.approx(100 * np.mean(gains))
    assert coop_init["test_mean_pts"] == pytest.approx(100 * np.mean([0.64, 0.72]))
    assert coop_init["baseline_mean_pts"] == pytest.approx(100 * np.mean([0.55, 0.75]))
    # two targets: every resampled mean is one of the gains or their mean
    lo, hi = coop_init["gain_ci_low_pts"], coop_init["gain_ci_high_pts"]
    assert 100 * min(gains) - 1e-9 <= lo <= coop_init["gain_mean_pts"] <= hi <= 100 * max(gains) + 1e-9
    # strategy all on two demo tasks is not the paper's Table 1 setting: its numbers are not beside the row
    assert coop_init["paper"] == "" and coop_init["shots"] == 5
    soft = summary[summary["method"] == "softcpt"].iloc[0]
    assert soft["paper"].startswith("SoftCPT paper, RN50") and "Plant-6 67.68 vs 62.59" in soft["paper"]
    assert summary[(summary["method"] == "coop") & (summary["mode"] == "joint")].iloc[0]["paper"] == ""
    no_ci = multitask.summarize(table, n_boot=0)
    assert no_ci["gain_ci_low_pts"].isna().all()


def test_missing_results_are_one_sentence_naming_the_first_missing_file(small):
    root, groups, _ = small
    row = groups[(groups["method"] == "coop") & (groups["mode"] == "joint") & (groups["target"] == "b")].iloc[0]
    gone = layout.MULTITASK_RESULT.path(root, "coop", "joint", row["group"], "b", 2)
    gone.unlink()
    incomplete = rf"coop joint results of strategy all are incomplete: {re.escape(str(gone))} is missing; run the multitask"
    with pytest.raises(MvlptError, match=incomplete):
        multitask.collect(root, groups)
    base = layout.RESULT.path(root, "coop", "a", "a", 1)
    base.unlink()
    no_base = rf"single-task baseline {re.escape(str(base))} of coop's target a is missing; run the pairwise study"
    with pytest.raises(MvlptError, match=no_base):
        multitask.collect(root, groups[groups["mode"] == "init"])
    with pytest.raises(MvlptError, match="no multitask result files"):
        multitask.collect(root / "elsewhere", groups)


def test_misplaced_or_mixed_records_are_refused(small, caplog):
    root, groups, _ = small
    row = groups[(groups["method"] == "coop") & (groups["mode"] == "init") & (groups["target"] == "a")].iloc[0]
    path = layout.MULTITASK_RESULT.path(root, "coop", "init", row["group"], "a", 1)
    write_multitask_record(root, "coop", "joint", row["group"], "a", 1, 0.6, ["b"]).replace(path)  # a joint run's record
    with pytest.raises(MvlptError, match="holds method/target/seed/mode .* but its place says"):
        multitask.collect(root, groups)
    write_multitask_record(root, "coop", "init", row["group"], "a", 1, 0.6, ["b"], epochs=7)
    with pytest.raises(MvlptError, match="different settings .*epochs"):
        multitask.collect(root, groups)
    assert len(multitask.collect(root, groups, allow_mixed_settings=True)) == len(groups)
    assert "averaged anyway" in caplog.text


def test_two_protocols_are_refused_and_softcpts_own_epochs_are_not(small):
    """Issue 27: a multitask row never mixes protocols (mixed settings allowed or not); SoftCPT against CoOp's
    baseline may train its own number of epochs (multitask.task_conditioned_train under the reference protocol)."""
    root, groups, _ = small
    soft = groups[(groups["method"] == "softcpt") & (groups["target"] == "a")].iloc[0]
    for seed in (1, 2):
        write_multitask_record(root, "softcpt", "joint", soft["group"], "a", seed, 0.6, ["b"], epochs=50)
    assert len(multitask.collect(root, groups)) == len(groups)
    row = groups[(groups["method"] == "coop") & (groups["mode"] == "init") & (groups["target"] == "a")].iloc[0]
    write_multitask_record(root, "coop", "init", row["group"], "a", 1, 0.6, ["b"], protocol="reference")
    for allow in (False, True):
        with pytest.raises(MvlptError, match="the results mix protocols, 3 under corrected .* and 1 under reference"):
            multitask.collect(root, groups, allow_mixed_settings=allow)


def test_cli_table_and_figure_on_a_fabricated_study(tmp_path, capsys):
    root = tmp_path / "results"
    tasks = ("alpha", "beta", "gamma", "delta", "epsilon")
    write_fake_multitask_study(root, tasks=tasks)
    out = root / "tables"
    argv = [
        "multitask",
        "table",
        "--results-dir",
        str(root),
        "--groups",
        str(grouping.groups_path(root)),
        "--out",
        str(out / "multitask.csv"),
        "--summary-out",
        str(out / "multitask_summary.csv"),
        "--tasks",
        *tasks,
        "--n-boot",
        "200",
        "--boot-seed",
        "3",
    ]
    assert main(argv) == 0
    table = pd.read_csv(out / "multitask.csv")
    summary = pd.read_csv(out / "multitask_summary.csv", keep_default_na=False)
    assert set(table["target"]) == set(tasks) and (table["n_seeds"] == 2).all()
    assert len(summary) == 2 * 2 * 4 + 1  # coop, vpt x 2 modes x 4 strategies + softcpt joint all
    # planted: a group's gain is the mean pairwise gain of its sources, so the top-k by gain beats all others
    mean = summary.set_index(["method", "mode", "strategy"])["gain_mean_pts"]
    for m in ("coop", "vpt"):
        for d in ("init", "joint"):
            assert mean[(m, d, "gain")] > mean[(m, d, "all")]
    assert (out / "multitask.parquet").exists() and (out / "multitask_summary.parquet").exists()
    fig_out = root / "figures" / "multitask.png"
    assert main(["multitask", "figure", "--summary", str(out / "multitask_summary.csv"), "--out", str(fig_out)]) == 0
    assert fig_out.stat().st_size > 0 and fig_out.with_suffix(".pdf").stat().st_size > 0
    capsys.readouterr()
    assert main([*argv[:5], str(tmp_path / "nothing.csv"), *argv[6:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mvlpt: error: groups table") and err.count("\n") == 1


def test_figure_bars_are_the_summary_gains(small):
    import matplotlib.pyplot as plt

    root, groups, _ = small
    summary = multitask.summarize(multitask.collect(root, groups), n_boot=100)
    fig = multitask.gain_figure(summary)
    axes = [ax for ax in fig.axes if ax.patches]
    assert [ax.get_title() for ax in axes] == ["CoOp", "SoftCPT"]
    heights = [p.get_height() for ax in axes for p in ax.patches]
    assert heights == pytest.approx(summary["gain_mean_pts"].tolist())
    stars = [ln for ax in axes for ln in ax.lines if ln.get_marker() == "*"]
    assert stars == []  # strategy all on demo tasks: not the paper's setting, no paper star
    plt.close(fig)
    # the paper's Table 1 setting: its gain starred
    fig = multitask.gain_figure(multitask.summarize(_table1_rows(), n_boot=0, source_prompt="averaged"))
    stars = [ln for ax in fig.axes for ln in ax.lines if ln.get_marker() == "*"]
    assert len(stars) == 1 and stars[0].get_ydata()[0] == pytest.approx(61.5 - 55.5)
    plt.close(fig)


def _table1_rows(**change) -> pd.DataFrame:
    """Multitask-table rows of CoOp, mode init, strategy fixed, in the paper's Table 1 setting (then ``change``)."""
    t1 = settings.TABLE1_DEFAULTS
    rows = pd.DataFrame(
        {
            "method": "coop",
            "mode": "init",
            "strategy": "fixed",
            "target": list(t1["targets"]),
            "sources": "+".join(reversed(t1["sources"])),  # order does not matter
            "shots": 5,
            "model": "ViT-B-16-quickgelu/openai",
            "test_mean": 0.6,
            "baseline_mean": 0.55,
            "gain": 0.05,
        }
    )
    for k, v in change.items():
        rows[k] = v
    return rows


def test_the_papers_table1_numbers_stand_only_beside_its_setting():
    rows = _table1_rows()
    assert multitask.paper_setting(rows, "averaged")
    assert multitask.paper_reference("coop", "init", "fixed", rows, "averaged").startswith("MCoOp 61.5 (CoOp 55.5)")
    # each part of the setting, changed alone, takes the numbers away
    assert not multitask.paper_setting(rows, None)  # one source prompt per seed, not their average
    assert not multitask.paper_setting(rows, "per_seed")
    assert not multitask.paper_setting(_table1_rows(shots=20), "averaged")
    assert not multitask.paper_setting(_table1_rows(model="mvlpt-tiny/synthetic"), "averaged")
    assert not multitask.paper_setting(_table1_rows(sources="caltech-101+dtd"), "averaged")
    assert not multitask.paper_setting(_table1_rows(strategy="all"), "averaged")
    assert not multitask.paper_setting(rows.iloc[:11], "averaged")  # a target missing
    assert multitask.paper_reference("coop", "init", "fixed", rows.iloc[:11], "averaged") == ""
    summary = multitask.summarize(rows.assign(test_std=np.nan, baseline_std=np.nan), n_boot=0, source_prompt="averaged")
    assert summary["paper"].iloc[0].startswith("MCoOp 61.5") and summary["shots"].iloc[0] == 5
    assert multitask.summarize(rows, n_boot=0)["paper"].iloc[0] == ""

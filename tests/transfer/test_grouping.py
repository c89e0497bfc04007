"""Grouping strategies of the multitask study (mvlpt.transfer.grouping): known answers on hand-built matrices."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mvlpt.analysis.tables import write_table
from mvlpt.cli import main
from mvlpt.errors import MvlptError
from mvlpt.study import vocabulary
from mvlpt.transfer import grouping

TASKS = ["a", "b", "c", "d", "e"]


def matrix(values: dict[tuple[str, str], float], tasks=TASKS, fill=0.0) -> pd.DataFrame:
    """A source (rows) x target (columns) matrix, ``fill`` except the given (source, target) cells."""
    m = pd.DataFrame(fill, index=pd.Index(tasks, name="source"), columns=pd.Index(tasks, name="target"))
    for (s, t), v in values.items():
        m.loc[s, t] = v
    return m


def long_table(m: pd.DataFrame, measure: str) -> pd.DataFrame:
    return pd.DataFrame(
        [(s, t, measure, float(m.loc[s, t])) for s in m.index for t in m.columns],
        columns=["task_a", "task_b", "measure", "value"],
    )


def test_gain_takes_the_top_k_sources_of_the_target_never_the_target():
    gain = matrix(
        {("a", "a"): 0.9, ("b", "a"): 0.1, ("c", "a"): 0.3, ("d", "a"): -0.2, ("e", "a"): 0.2, ("a", "b"): 0.5}
    )  # the diagonal and other targets must not matter
    assert grouping.sources_gain(gain, "a", TASKS, 2) == ["c", "e"]  # in config order, not rank order
    assert grouping.sources_gain(gain, "a", TASKS, 1) == ["c"]
    assert grouping.sources_gain(gain, "a", TASKS, 3) == ["b", "c", "e"]
    assert grouping.sources_gain(gain, "b", TASKS, 1) == ["a"]


def test_ties_are_broken_by_config_order_and_large_k_gives_every_other_task():
    gain = matrix({("b", "a"): 0.1, ("c", "a"): 0.1, ("d", "a"): 0.1, ("e", "a"): 0.05})
    assert grouping.sources_gain(gain, "a", TASKS, 2) == ["b", "c"]
    assert grouping.sources_gain(gain, "a", ["a", "e", "d", "c", "b"], 2) == ["d", "c"]
    assert grouping.sources_gain(gain, "a", TASKS, 4) == ["b", "c", "d", "e"]
    assert grouping.sources_gain(gain, "a", TASKS, 10) == ["b", "c", "d", "e"]


def test_similarity_reads_task_a_as_source_and_turns_distances_around(tmp_path):
    # an asymmetric matrix: row (task_a) = source, column (task_b) = target
    m = matrix(
        {
            ("b", "a"): 0.9,
            ("c", "a"): 0.1,
            ("d", "a"): 0.5,
            ("e", "a"): 0.3,
            ("a", "b"): 0.0,
            ("a", "c"): 1.0,
            ("a", "d"): 1.0,
            ("a", "e"): 1.0,
        }
    )
    for measure, expected in (("label_match", ["b", "d"]), ("visual_frechet", ["c", "e"])):
        write_table(long_table(m, measure), tmp_path / measure)
        sim = grouping.read_similarity_matrix(tmp_path / f"{measure}.csv", measure, TASKS)
        assert vocabulary.MEASURES[measure].distance == (measure == "visual_frechet")
        assert grouping.sources_similarity(sim, measure, "a", TASKS, 2) == expected
    with pytest.raises(MvlptError, match="has no label_cosine values"):
        grouping.read_similarity_matrix(tmp_path / "label_match.csv", "label_cosine", TASKS)


def test_predictor_matrix_per_method_or_shared():
    coop = matrix({("b", "a"): 0.9, ("c", "a"): 0.8})
    vpt = matrix({("d", "a"): 0.9, ("e", "a"): 0.8})
    assert vocabulary.PREDICTORS["prompt_accuracy"].per_method and not vocabulary.PREDICTORS["leep"].per_method
    g = grouping.choose_groups(
        TASKS, ["coop", "vpt"], ["predictor"], ["init"], k=2, predicted={"coop": coop, "vpt": vpt}, predictor="prompt_accuracy"
    )
    picked = g[g["target"] == "a"].set_index("method")["sources"]
    assert picked["coop"] == "b+c" and picked["vpt"] == "d+e"
    g = grouping.choose_groups(TASKS, ["coop", "vpt"], ["predictor"], ["init"], k=2, predicted={None: vpt}, predictor="leep")
    assert set(g[g["target"] == "a"]["sources"]) == {"d+e"}
    with pytest.raises(MvlptError, match="predictor matrix of vpt"):
        grouping.choose_groups(
            TASKS, ["coop", "vpt"], ["predictor"], ["init"], k=2, predicted={"coop": coop}, predictor="prompt_accuracy"
        )


TWELVE = [f"task{i:02d}" for i in range(12)]


def test_random_groups_are_stable_distinct_per_target_and_never_hold_the_target():
    draws = {t: grouping.sources_random(t, TWELVE, 3, seed=0) for t in TWELVE}
    assert draws == {t: grouping.sources_random(t, TWELVE, 3, seed=0) for t in TWELVE}
    for t, s in draws.items():
        assert t not in s and len(s) == 3 and len(set(s)) == 3
        assert s == [x for x in TWELVE if x in s]  # config order
    # which of the other tasks (by position) were drawn differs between targets, and with the seed
    positions = {tuple(grouping.sources_all(t, TWELVE).index(x) for x in s) for t, s in draws.items()}
    assert len(positions) > 1
    assert any(grouping.sources_random(t, TWELVE, 3, seed=1) != s for t, s in draws.items())
    assert grouping.sources_random("task00", TWELVE, 11, seed=0) == TWELVE[1:]


def test_random_groups_are_the_same_in_another_process_and_for_every_method():
    code = f"from mvlpt.transfer.grouping import sources_random; print('+'.join(sources_random('task05', {TWELVE!r}, 4, seed=7)))"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert out == "+".join(grouping.sources_random("task05", TWELVE, 4, seed=7))
    g = grouping.choose_groups(TWELVE, ["coop", "vpt", "upt"], ["random"], ["init"], k=4, seed=7)
    per_method = g.pivot(index="target", columns="method", values="sources")
    assert (per_method["coop"] == per_method["vpt"]).all() and (per_method["coop"] == per_method["upt"]).all()
    assert per_method.loc["task05", "coop"] == out


def test_modes_make_the_training_group_and_its_id():
    gain = matrix({("b", "a"): 0.3, ("e", "a"): 0.2, ("c", "a"): 0.1})
    g = grouping.choose_groups(TASKS, ["coop"], ["gain", "all"], ["init", "joint"], k=2, gain={"coop": gain})
    row = g.set_index(["strategy", "mode", "target"])
    init, joint = row.loc[("gain", "init", "a")], row.loc[("gain", "joint", "a")]
    assert init["sources"] == joint["sources"] == "b+e"
    assert init["tasks"] == "b+e" and init["group"] == vocabulary.group_id(["e", "b"])
    assert joint["tasks"] == "a+b+e" and joint["group"] == vocabulary.group_id(["a", "b", "e"])
    assert init["k"] == 2
    every = row.loc[("all", "joint")]
    assert every["group"].nunique() == 1 and set(every["tasks"]) == {"+".join(TASKS)}  # one run serves every target
    assert (row.loc[("all", "init")]["k"] == 4).all()
    assert len(g) == 2 * 2 * len(TASKS)


def test_softcpt_has_only_strategy_all_in_mode_joint():
    g = grouping.choose_groups(
        TASKS, ["coop", "softcpt"], ["all", "gain", "random"], ["init", "joint"], k=2, gain={"coop": matrix({})}
    )
    soft = g[g["method"] == "softcpt"]
    assert set(zip(soft["strategy"], soft["mode"])) == {("all", "joint")}
    assert len(soft) == len(TASKS) and soft["group"].nunique() == 1
    assert soft["group"].iloc[0] == vocabulary.group_id(TASKS)
    assert not grouping.offered("softcpt", "gain", "joint") and grouping.offered("coop", "gain", "init")


def test_groups_csv_is_byte_identical_on_a_second_write_and_reads_back(tmp_path):
    gain = {"coop": matrix({("b", "a"): 0.3}), "vpt": matrix({("c", "a"): 0.3})}
    g = grouping.choose_groups(TASKS, ["coop", "vpt"], ["all", "gain", "random"], ["init", "joint"], k=2, gain=gain)
    path = grouping.groups_path(tmp_path)
    grouping.write_groups(g, path)
    first = path.read_bytes()
    grouping.write_groups(g.sample(frac=1.0, random_state=3), path)  # another row order: the same file
    assert path.read_bytes() == first
    grouping.write_groups(
        grouping.choose_groups(TASKS, ["coop", "vpt"], ["all", "gain", "random"], ["init", "joint"], k=2, gain=gain), path
    )
    assert path.read_bytes() == first
    back = grouping.read_groups(path)
    pd.testing.assert_frame_equal(back, g.reset_index(drop=True))
    assert not list(tmp_path.glob("multitask/.*.tmp"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"strategies": ["best"]}, "unknown grouping strategy 'best'"),
        ({"modes": ["both"]}, "unknown multitask mode 'both'"),
        ({"strategies": ["similarity"], "measure": "nope"}, "unknown similarity measure 'nope'"),
        ({"strategies": ["predictor"], "predictor": "nope"}, "unknown transferability predictor 'nope'"),
        ({"strategies": ["gain"]}, "needs the pairwise gain matrix of coop; run the pairwise study first"),
        ({"strategies": ["gain"], "gain": {"coop": matrix({}, tasks=["a", "b", "c", "d"])}}, "lacks task e"),
        ({"strategies": ["gain"], "gain": {"coop": matrix({("c", "a"): np.nan})}}, "no value for source c -> target a"),
        ({"k": 0}, "k must be at least 1"),
    ],
)
def test_user_errors_are_one_sentence(kwargs, match):
    args = {"strategies": ["all"], "modes": ["init"], **kwargs}
    with pytest.raises(MvlptError, match=match):
        grouping.choose_groups(TASKS, ["coop"], **args)


def test_cli_groups_reads_the_workflow_files_and_fails_in_one_sentence(tmp_path, capsys):
    from mvlpt.transfer.predictors import write_predictor

    mats = tmp_path / "tables" / "matrices"
    for method, best in (("coop", "b"), ("vpt", "d")):
        write_table(matrix({(best, "a"): 0.4, ("c", "a"): 0.2}), mats / f"{method}_gain", index=True)
        write_predictor(
            matrix({(best, "a"): 0.1, ("e", "a"): 0.9}),
            "prompt_accuracy",
            1.0,
            tmp_path / "predictors" / method / "prompt_accuracy",
            method=method,
        )
    write_table(long_table(matrix({("e", "a"): 0.9, ("b", "a"): 0.8}), "label_match"), tmp_path / "similarity" / "label_match")
    out = tmp_path / "multitask" / "groups.csv"
    gain = [str(mats / "coop_gain.csv"), str(mats / "vpt_gain.csv")]
    argv = [
        "multitask",
        "groups",
        "--tasks",
        *TASKS,
        "--methods",
        "coop",
        "vpt",
        "softcpt",
        "--strategies",
        "all",
        "gain",
        "similarity",
        "predictor",
        "random",
        "--k",
        "2",
        "--similarity",
        str(tmp_path / "similarity" / "label_match.csv"),
        "--predictor-name",
        "prompt_accuracy",
        "--predictor",
        *(str(tmp_path / "predictors" / m / "prompt_accuracy.csv") for m in ("vpt", "coop")),
        "--out",
        str(out),
    ]
    assert main([*argv, "--gain", *gain]) == 0
    g = grouping.read_groups(out)
    pick = g[(g["target"] == "a") & (g["mode"] == "init")].set_index(["method", "strategy"])["sources"]
    assert pick[("coop", "gain")] == "b+c" and pick[("vpt", "gain")] == "c+d"
    assert pick[("coop", "similarity")] == pick[("vpt", "similarity")] == "b+e"
    assert pick[("coop", "predictor")] == "b+e" and pick[("vpt", "predictor")] == "d+e"
    assert set(g.loc[g["method"] == "softcpt", "strategy"]) == {"all"}
    first = out.read_bytes()
    assert main([*argv, "--gain", *gain]) == 0 and out.read_bytes() == first
    capsys.readouterr()
    assert main([*argv, "--gain", gain[0], str(mats / "nowhere_gain.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mvlpt: error: pairwise gain matrix") and "snakemake analysis" in err and err.count("\n") == 1
    assert main([*argv, "--gain", gain[0]]) == 2
    assert "needs the pairwise gain matrix of vpt" in capsys.readouterr().err
    assert main([*argv, "--gain", *gain, "--predictor-name", "leep"]) == 2
    assert "is the matrix of predictor prompt_accuracy, not of leep" in capsys.readouterr().err


def test_strategy_fixed_gives_every_target_the_same_sources_and_no_source_is_a_target():
    from mvlpt.study import vocabulary
    from mvlpt.transfer import grouping

    tasks = ["a", "b", "c", "d", "e"]
    groups = grouping.choose_groups(tasks, ["coop", "vpt"], ["fixed"], ["init", "joint"], sources=["d", "b"])
    assert set(groups["target"]) == {"a", "c", "e"} and len(groups) == 2 * 2 * 3
    init = groups[groups["mode"] == "init"]
    assert set(init["sources"]) == {"b+d"} and set(init["group"]) == {vocabulary.group_id(["b", "d"])}
    joint = groups[(groups["mode"] == "joint") & (groups["target"] == "c")]
    assert set(joint["tasks"]) == {"b+c+d"}
    grouping.check_groups(groups)  # consistent
    bad = groups.copy()
    bad.loc[bad.index[0], ["sources", "tasks", "group"]] = ["b+c", "b+c", vocabulary.group_id(["b", "c"])]
    with pytest.raises(MvlptError, match="include a target of strategy fixed"):
        grouping.check_groups(bad[bad["mode"] == "init"])
    with pytest.raises(MvlptError, match="strategy fixed needs its source tasks"):
        grouping.choose_groups(tasks, ["coop"], ["fixed"], ["init"])
    with pytest.raises(MvlptError, match="no other strategy beside it"):
        grouping.choose_groups(tasks, ["coop"], ["fixed", "all"], ["init"], sources=["a"])
    # what the plan and the price count: one source prompt per method, each target fine-tuned from it
    counts = vocabulary.multitask_job_counts(
        5, {"methods": ["coop", "vpt"], "modes": ["init"], "strategies": ["fixed"], "k": 3, "sources": ["b", "d"]}
    )
    assert (counts["source"], counts["target"], counts["joint"], counts["exact"]) == (2, 6, 0, True)


def test_the_multitask_section_refuses_fixed_without_sources_and_sources_outside_the_tasks():
    from mvlpt.running.multitask_check import multitask_problems

    base = {"tasks": ["shapes", "glyph-digits", "orientation"], "methods": ["coop"]}
    ok = {**base, "multitask": {"strategies": ["fixed"], "modes": ["init"], "sources": ["shapes"]}}
    assert multitask_problems(ok) == []
    for section, needle in (
        ({"strategies": ["fixed"]}, "give both or neither"),
        ({"strategies": ["all"], "sources": ["shapes"]}, "give both or neither"),
        ({"strategies": ["fixed", "gain"], "sources": ["shapes"]}, "allows no other strategy"),
        ({"strategies": ["fixed"], "sources": ["mnist"]}, "names mnist, not among the study's `tasks`"),
        ({"strategies": ["fixed"], "sources": ["shapes", "glyph-digits", "orientation"]}, "lists every task"),
    ):
        found = multitask_problems({**base, "multitask": section})
        assert len(found) == 1 and needle in found[0], (section, found)

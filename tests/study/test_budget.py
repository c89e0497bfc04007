"""The budgeted study's arithmetic and config (mvlpt.study.budget, the `budget` section): pairs and rounds from
fractions or numbers of pairs, round lists that do not depend on the total budget (a larger budget keeps
them), round files, and nonsense refused in one sentence."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mvlpt.errors import MvlptError
from mvlpt.study import budget, settings

TASKS5 = ["shapes", "shape-colours", "texture-colours", "glyph-digits", "orientation"]


def cfg(section=None, tasks=TASKS5, mode="joint", **top):
    out = {"tasks": list(tasks), "mode": mode, **top}
    if section is not None:
        out["budget"] = section
    return out


@pytest.mark.parametrize(
    "n, mode, total",
    [(5, "joint", 10), (5, "sequential", 20), (20, "joint", 190), (20, "zero_epoch", 380), (3, "joint", 3)],
)
def test_a_pair_is_what_one_training_job_trains(n, mode, total):
    assert budget.pair_count(n, mode) == total


@pytest.mark.parametrize(
    "section, mode, pairs, chosen, sizes",
    [
        # 10 joint pairs; 0.5 -> 5; initial 3, then rounds of 1
        ({"pairs": 0.5, "round_size": 1, "initial": 3}, "joint", 5, (3, 1, 1), (3, 1, 1)),
        # a number of pairs; the last round trains only the first of its list
        ({"pairs": 7, "round_size": 3, "initial": 3}, "joint", 7, (3, 3, 3), (3, 3, 1)),
        # the schema's defaults: 0.33 of 20 ordered pairs -> 7, below the initial design's 2 x 5 (every task
        # twice as source and target): round 0 alone, the first 7 of its list
        ({}, "sequential", 7, (10,), (7,)),
        ({"pairs": 0.9}, "sequential", 18, (10, 2, 2, 2, 2), (10, 2, 2, 2, 2)),
        # the whole study: the rounds list every pair once (joint: the initial design is 5 unordered pairs)
        ({"pairs": 1.0, "round_size": 4}, "joint", 10, (5, 4, 1), (5, 4, 1)),
        # a budget below the initial design trains part of it
        ({"pairs": 2, "initial": 4}, "joint", 2, (4,), (2,)),
    ],
)
def test_the_plan_in_pairs_and_rounds(section, mode, pairs, chosen, sizes):
    p = budget.plan(cfg(section, mode=mode))
    assert (p.pairs, p.chosen, p.sizes, p.rounds) == (pairs, chosen, sizes, len(sizes))
    assert sum(p.sizes) == p.pairs and all(s <= c for s, c in zip(p.sizes, p.chosen))
    assert p.cells == pairs * (2 if mode == "joint" else 1)


def test_a_larger_budget_keeps_every_round_list_and_trains_more():
    """A round's list depends on the round sizes, not on the total budget: every round a smaller budget
    ran is the same round under a larger one, each trains at least as much."""
    small = budget.plan(cfg({"pairs": 0.3, "round_size": 2, "initial": 3}, tasks=TASKS5 + ["glyph-letters"]))
    large = budget.plan(cfg({"pairs": 0.6, "round_size": 2, "initial": 3}, tasks=TASKS5 + ["glyph-letters"]))
    assert large.rounds > small.rounds
    assert large.chosen[: small.rounds] == small.chosen
    assert all(b >= a for a, b in zip(small.sizes, large.sizes))
    assert (small.pairs, large.pairs) == (5, 9)  # 0.3 x 15 = 4.5, half up; 0.6 x 15 = 9


@pytest.mark.parametrize(
    "n, mode, first", [(20, "joint", 20), (20, "sequential", 40), (6, "joint", 6), (3, "joint", 3), (3, "sequential", 6)]
)
def test_the_default_initial_design_measures_every_task_twice_each_way(n, mode, first):
    """n unordered pairs (each task in two) or 2n ordered ones: the effects are identified from round 0 on."""
    assert budget.initial_size(None, n, mode) == first
    assert budget.initial_size(0.5, n, mode) == budget.as_pairs(0.5, budget.pair_count(n, mode))
    tasks = [f"task{i}" for i in range(n)]
    from mvlpt.transfer import selection

    pairs = selection.initial_pairs(tasks, first, symmetric=mode == "joint", seed=0)
    cells = budget.cells_of(pairs, mode == "joint")
    if first == n * (1 if mode == "joint" else 2) and n > 3:
        assert {t: sum(s == t for s, _ in cells) for t in tasks} == dict.fromkeys(tasks, 2)
        assert {t: sum(u == t for _, u in cells) for t in tasks} == dict.fromkeys(tasks, 2)


def test_a_fraction_is_a_decimal_and_a_number_of_pairs_a_whole_number():
    assert budget.as_pairs(0.5, 10) == 5 and budget.as_pairs(0.04, 10) == 1  # at least one pair
    assert budget.as_pairs(1, 10) == 1 and budget.as_pairs(1.0, 10) == 10  # YAML's 1 and 1.0
    assert budget.as_pairs(0.25, 10) == 3  # half up


@pytest.mark.parametrize(
    "section, tasks, needle",
    [
        ({"pairs": 0}, TASKS5, "budget.pairs: 0 is less than or equal to the minimum of 0"),
        (
            {"pairs": 1.5},
            TASKS5,
            "budget.pairs is 1.5, a decimal above 1: give a fraction of the pairs in (0, 1] or a whole number",
        ),
        ({"pairs": 12.0}, TASKS5, "(write 12 for that many pairs)"),
        ({"pairs": 11}, TASKS5, "budget.pairs is 11 pairs, more than the study's 10"),
        ({"round_size": 2.5}, TASKS5, "budget.round_size is 2.5, a decimal above 1"),
        ({"initial": 0}, TASKS5, "budget.initial: 0 is less than or equal to the minimum of 0"),
        ({"rule": "greedy"}, TASKS5, "budget.rule: 'greedy' is not one of ['uncertainty', 'improvement', 'random']"),
        ({"pair": 0.3}, TASKS5, "budget: Additional properties are not allowed ('pair' was unexpected)"),
        ({}, TASKS5[:2], "the budgeted study needs at least 3 tasks (the config has 2)"),
        ({"side": ["baseline", "oracle"]}, TASKS5, "unknown side information oracle in `budget.side`; give baseline, similarity"),
        ({"side": ["leep"], "predictors": {"names": ["nce"]}}, TASKS5, "`budget.side` reads predictor(s) leep, which the study"),
        ({"side": ["baseline", "baseline"]}, TASKS5, "budget.side: ['baseline', 'baseline'] has non-unique elements"),
        ({"pairs": 1}, TASKS5, None),  # joint: one pair is two cells
        (
            {"pairs": 1, "mode": "sequential"},
            TASKS5,
            "budget.pairs gives round 0 1 measured cell, and the completion needs at least 2",
        ),
        ({"initial": 1, "mode": "sequential"}, TASKS5, "budget.initial gives round 0 1 measured cell"),
    ],
)
def test_nonsense_is_refused_in_one_sentence(section, tasks, needle):
    section = dict(section)
    mode = section.pop("mode", "joint")
    top = {"predictors": section.pop("predictors")} if "predictors" in section else {}
    if needle is None:
        assert settings.load(cfg(section, tasks=tasks, mode=mode, **top), budget=True).budget.pairs == section["pairs"]
        return
    with pytest.raises(MvlptError) as e:
        settings.load(cfg(section, tasks=tasks, mode=mode, **top), budget=True)
    msg = str(e.value)
    assert needle in msg and msg.startswith("invalid config: ") and msg.endswith(".") and "\n" not in msg, msg


def test_the_section_is_checked_for_sense_only_when_the_run_asks_for_it():
    """Its types always (the schema), what it means for the study only in a budgeted run."""
    two = cfg({"pairs": 0.5}, tasks=TASKS5[:2])
    assert settings.load(two).budget.pairs == 0.5
    with pytest.raises(MvlptError, match="needs at least 3 tasks"):
        settings.load(two, budget=True)
    with pytest.raises(MvlptError, match="budget.pairs: 'a third' is not of type 'number'"):
        settings.load(cfg({"pairs": "a third"}))


def test_the_plan_carries_the_side_information():
    assert budget.plan(cfg({})).side == ("baseline",)
    assert budget.plan(cfg({"side": ["label_match", "prompt_accuracy"]})).side == ("label_match", "prompt_accuracy")


def test_the_schema_rules_are_the_selection_modules():
    from mvlpt.transfer import selection

    assert settings.choices("budget", "rule") == list(selection.RULES)
    assert settings.BUDGET_DEFAULTS["rule"] in selection.RULES


def test_round_files_round_trip_and_refuse_what_is_not_one(tmp_path):
    pairs = [("shapes", "orientation"), ("glyph-digits", "shapes")]
    path = budget.write_round(pairs, 2, tmp_path / "budget" / "coop" / "round2.csv")
    assert budget.read_round(path) == pairs
    assert path.read_text().splitlines()[:2] == ["round,rank,source,target", "2,0,shapes,orientation"]
    (tmp_path / "bad.csv").write_text("source,target\na,b\n")
    with pytest.raises(MvlptError, match="is not a budget round file"):
        budget.read_round(tmp_path / "bad.csv")
    assert budget.cells_of(pairs, symmetric=True) == [
        ("shapes", "orientation"),
        ("orientation", "shapes"),
        ("glyph-digits", "shapes"),
        ("shapes", "glyph-digits"),
    ]


def test_the_plan_message_counts_the_training_jobs():
    p = budget.plan(cfg({"pairs": 0.5, "round_size": 1, "initial": 3}))
    msg = budget.plan_message(p, ["coop", "vpt"], seeds=3, stack_seeds=False)
    # (5 baselines + 5 pairs) x 2 methods x 3 seeds (one job per seed)
    assert "5 of 10 unordered pairs (50 %) per method in 3 round(s) of 3, 1, 1 (rule improvement)" in msg
    assert ": 60 training jobs for coop, vpt;" in msg


def test_the_module_imports_neither_numpy_nor_pandas():
    """The workflow reads the plan at every start and the round files while it plans."""
    code = (
        "import sys; import mvlpt.study.budget; assert not {'numpy', 'pandas', 'torch'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

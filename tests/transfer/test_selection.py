"""The selection rules of a budgeted study (mvlpt.transfer.selection): a balanced first round, rules
that pick what they say, random as the control, joint mode's unordered pairs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from mvlpt.errors import MvlptError
from mvlpt.transfer import selection

TASKS = [f"t{k}" for k in range(8)]


def completed(gain=None, sd=None, measured=()):
    """A completed matrix over TASKS: every cell gain 0, sd 1 unless given; ``measured`` cells flagged."""
    rows = []
    for s in TASKS:
        for t in TASKS:
            if s != t:
                rows.append((s, t, (gain or {}).get((s, t), 0.0), (sd or {}).get((s, t), 1.0), (s, t) in set(measured)))
    out = pd.DataFrame(rows, columns=["source", "target", "gain", "sd", "measured"])
    out["lo"], out["hi"] = out["gain"] - out["sd"], out["gain"] + out["sd"]
    return out


@pytest.mark.parametrize("k", [8, 16, 19])
def test_initial_pairs_are_balanced_and_distinct(k):
    pairs = selection.initial_pairs(TASKS, k, symmetric=False, seed=3)
    assert len(pairs) == k and len(set(pairs)) == k
    assert all(s != t and s in TASKS and t in TASKS for s, t in pairs)
    as_source, as_target = Counter(s for s, _ in pairs), Counter(t for _, t in pairs)
    for counts in (as_source, as_target):
        # whole shifts put every task k // n times on each side; a partial shift adds at most one
        assert set(TASKS) <= set(counts) if k >= len(TASKS) else True
        assert max(counts.values()) - min(counts.get(t, 0) for t in TASKS) <= 1
    assert selection.initial_pairs(TASKS, k, symmetric=False, seed=3) == pairs  # reproducible
    assert selection.initial_pairs(TASKS, k, symmetric=False, seed=4) != pairs


def test_two_initial_shifts_connect_every_source_to_every_target():
    # the source and target effects are identified only if the measured cells connect all of them
    pairs = selection.initial_pairs(TASKS, 2 * len(TASKS), symmetric=False, seed=0)
    parent = {x: x for x in [("s", t) for t in TASKS] + [("t", t) for t in TASKS]}

    def root(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for s, t in pairs:
        parent[root(("s", s))] = root(("t", t))
    assert len({root(x) for x in parent}) == 1


def test_symmetric_initial_pairs_are_unordered_and_regular():
    pairs = selection.initial_pairs(TASKS, 16, symmetric=True, seed=1)
    assert all(a < b for a, b in pairs) and len(set(pairs)) == 16
    degree = Counter(x for p in pairs for x in p)
    assert set(degree.values()) == {4}  # two whole shifts: every task in 4 pairs
    everything = selection.initial_pairs(TASKS, 1000, symmetric=True, seed=1)
    assert len(everything) == len(TASKS) * (len(TASKS) - 1) // 2  # never more pairs than there are


def test_uncertainty_takes_the_widest_cells_spread_over_rows_and_columns():
    sd = {("t1", "t2"): 9.0, ("t1", "t3"): 8.0, ("t4", "t5"): 5.0}
    picks = selection.next_pairs(completed(sd=sd), 2, "uncertainty", symmetric=False, seed=0)
    # t1 -> t3 is wider than t4 -> t5 but shares its source with the first pick: the discount halves it
    assert picks == [("t1", "t2"), ("t4", "t5")]
    assert selection.next_pairs(completed(sd=sd, measured=[("t1", "t2")]), 1, "uncertainty", symmetric=False, seed=0) == [
        ("t1", "t3")
    ]


def test_improvement_goes_where_a_source_may_beat_the_targets_best():
    sd = {(s, t): 0.01 for s in TASKS for t in TASKS}  # every cell known to be 0 ...
    gain = {("t0", "t1"): 0.5, ("t2", "t1"): 0.45, ("t3", "t4"): 0.9, ("t6", "t7"): -1.0}
    # ... but: t2 -> t1 close under t1's best (0.5) and uncertain; t5 -> t4 far under t4's best (0.9) and
    # very uncertain; t6 -> t7 just as uncertain as t5 -> t4 but below a target whose best is 0
    sd.update({("t2", "t1"): 0.2, ("t5", "t4"): 3.0, ("t6", "t7"): 0.2})
    done = completed(gain=gain, sd=sd, measured=[("t0", "t1"), ("t3", "t4")])
    picks = selection.next_pairs(done, 2, "improvement", symmetric=False, seed=0)
    assert picks == [("t5", "t4"), ("t2", "t1")]
    scores = selection.cell_scores(done, "improvement", np.random.default_rng(0))
    assert scores[("t2", "t1")] > 10 * scores[("t6", "t7")]  # 0.057 against 0.00003: the mean matters


def test_random_is_the_control_it_ignores_the_model():
    sd = {("t1", "t2"): 50.0, ("t3", "t4"): 40.0}
    gain = {("t1", "t2"): 10.0}
    done = completed(gain=gain, sd=sd, measured=[("t0", "t1")])
    counts = Counter()
    draws = 400
    for seed in range(draws):
        counts.update(selection.next_pairs(done, 3, "random", symmetric=False, seed=seed))
    open_cells = len(TASKS) * (len(TASKS) - 1) - 1
    assert ("t0", "t1") not in counts  # measured cells are never picked
    assert len(counts) == open_cells  # every open cell is picked some time
    expected = draws * 3 / open_cells  # about 21.8 picks per cell; binomial sd about 4.6
    assert abs(counts[("t1", "t2")] - expected) < 4 * np.sqrt(expected)  # the widest cell is no favourite
    assert abs(counts[("t3", "t4")] - expected) < 4 * np.sqrt(expected)
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < open_cells + 4 * np.sqrt(2 * open_cells)  # uniform within about 4 sd of the chi-square


def test_symmetric_picks_unordered_pairs_with_no_measured_direction():
    sd = {("t5", "t2"): 9.0, ("t2", "t5"): 1.0, ("t6", "t7"): 6.0, ("t7", "t6"): 6.0, ("t0", "t1"): 20.0}
    done = completed(sd=sd, measured=[("t1", "t0")])  # t0 -- t1 was trained jointly: both directions are done
    for rule in selection.RULES:
        picks = selection.next_pairs(done, 5, rule, symmetric=True, seed=2)
        assert len(picks) == 5 and len(set(picks)) == 5
        assert all(a < b for a, b in picks)
        assert ("t0", "t1") not in picks
    top = selection.next_pairs(done, 2, "uncertainty", symmetric=True, seed=0)
    assert top == [("t2", "t5"), ("t6", "t7")]  # both directions' variances add: sqrt(81 + 1) > sqrt(72)


def test_fewer_open_pairs_than_asked_gives_all_of_them():
    done = completed(measured=[(s, t) for s in TASKS for t in TASKS if s != t and (s, t) != ("t0", "t1")])
    assert selection.next_pairs(done, 10, "uncertainty", symmetric=False, seed=0) == [("t0", "t1")]
    assert selection.next_pairs(done, 10, "improvement", symmetric=True, seed=0) == []  # t1 -> t0 measured
    assert selection.next_pairs(done, 0, "random", symmetric=False, seed=0) == []


def test_an_unknown_rule_ends_in_one_sentence():
    with pytest.raises(MvlptError, match="unknown selection rule 'greedy'"):
        selection.next_pairs(completed(), 1, "greedy", symmetric=False, seed=0)

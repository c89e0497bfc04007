"""The preflight prices a budgeted study (issue 26): its jobs and GPU-hours are the full study's baselines and
feature jobs plus its pairs' part scaled by the share of pairs the budget trains; the report says so."""

import json

import pytest

from mvlpt.cli import main
from mvlpt.running import calibration, cost, preflight
from mvlpt.study import budget

CAL = calibration.shipped_calibration()
TASKS5 = ["shapes", "shape-colours", "texture-colours", "glyph-digits", "orientation"]


def shape(mode="joint", stacked=True, n=5, seeds=3):
    tasks = tuple(
        cost.TaskCost(f"t{i}", 10 * (i + 1), 8 * (i + 1), 2 * (i + 1), 100 * (i + 1), {"coop": 22, "upt": 10}) for i in range(n)
    )
    return cost.StudyShape(tasks, ("coop", "vpt", "upt"), seeds, mode, stacked, 10, 32, 64, 100, 20)


@pytest.mark.parametrize("mode, stacked", [("joint", True), ("sequential", True), ("joint", False)])
def test_the_full_estimate_splits_into_its_kinds_of_job(mode, stacked):
    est = cost.estimate(shape(mode, stacked), CAL)
    copies = 1 if stacked else 3
    for method, v in est["per_method"].items():
        kinds = v["by_kind"]
        assert sum(k["gpu_hours"] for k in kinds.values()) == pytest.approx(v["gpu_hours"])
        assert sum(k["jobs"] for k in kinds.values()) == v["jobs"]
        assert kinds["baselines"]["jobs"] == 5 * copies
        assert kinds["pairs"]["jobs"] == budget.pair_count(5, mode) * copies
        assert kinds["features"]["jobs"] == (5 if method == "coop" else 0)


@pytest.mark.parametrize("mode, stacked", [("joint", True), ("sequential", False)])
@pytest.mark.parametrize("pairs", [0.33, 4, 1.0])
def test_the_price_at_a_budget_is_the_full_studys_scaled_by_the_pair_count(mode, stacked, pairs):
    est = cost.estimate(shape(mode, stacked), CAL)
    plan = budget.plan({"tasks": TASKS5, "mode": mode, "budget": {"pairs": pairs}})
    got = cost.estimate_budget(est, plan)
    share = plan.pairs / plan.total
    copies = 1 if stacked else 3
    for method, v in est["per_method"].items():
        k = v["by_kind"]
        want = k["baselines"]["gpu_hours"] + k["features"]["gpu_hours"] + share * k["pairs"]["gpu_hours"]
        assert got["per_method"][method]["gpu_hours"] == pytest.approx(want)
        assert got["per_method"][method]["jobs"] == k["baselines"]["jobs"] + k["features"]["jobs"] + copies * plan.pairs
    assert got["gpu_hours"] == pytest.approx(sum(v["gpu_hours"] for v in got["per_method"].values()))
    if pairs == 1.0:  # the whole study at its own price
        assert (got["gpu_hours"], got["jobs"]) == (pytest.approx(est["gpu_hours"]), est["jobs"])
    else:
        assert got["gpu_hours"] < est["gpu_hours"] and got["jobs"] < est["jobs"]


def test_preflight_reports_the_budgeted_study(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MVLPT_COST_CALIBRATION", str(tmp_path / "user-calibration.json"))
    cfg = {
        "tasks": TASKS5,
        "methods": ["coop", "vpt"],
        "seeds": [1, 2],
        "train": {"epochs": 2},
        "results_dir": str(tmp_path / "results"),
        "cache_dir": str(tmp_path / "cache"),
        "budget": {"pairs": 0.5, "round_size": 1, "initial": 3},
    }
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(cfg))
    out_json = tmp_path / "report.json"
    assert main(["preflight", "--configfile", str(path), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    rep = json.loads(out_json.read_text())
    b = rep["cost"]["budget"]
    assert (b["pairs"], b["total_pairs"], b["sizes"]) == (5, 10, [3, 1, 1])
    assert b["jobs"] == 2 * (5 + 5) + 5  # baselines and pairs per method, CoOp's feature jobs
    assert b["full_jobs"] == rep["cost"]["jobs"] and b["gpu_hours"] < rep["cost"]["gpu_hours"]
    assert (
        "budgeted study (`snakemake budgeted`): 5 of 10 unordered pairs (50 %) in 3 round(s) of 3, 1, 1, rule improvement:" in out
    )
    assert f"  total {b['gpu_hours']:9.1f} GPU-hours  ({b['jobs']} jobs)" in out
    # without the section, or told to leave it out: no budgeted study; a section that cannot run is a problem
    assert "budget" not in preflight.run({k: v for k, v in cfg.items() if k != "budget"}).cost
    assert "budget" not in preflight.run(cfg, budget=False).cost
    bad = preflight.run({**cfg, "budget": {"pairs": 11}})
    assert bad.problems == ["config: budget.pairs is 11 pairs, more than the study's 10."] and "budget" not in bad.cost
    # the workflow asks for it by its target: the schema's default section is priced then
    assert "budget" in preflight.run({k: v for k, v in cfg.items() if k != "budget"}, budget=True).cost

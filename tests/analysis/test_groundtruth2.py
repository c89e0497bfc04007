"""The second designed world (issue 25, docs/groundtruth.md "A second world, pre-registered"): its
structure, the primary statistic and its interval, the power simulation, and a reduced world run end
to end."""

import numpy as np
import pandas as pd
import pytest

from mvlpt.analysis import groundtruth
from mvlpt.errors import MvlptError
from mvlpt.tasks import designed, get_task, list_tasks

W2 = designed.SUITE2


def test_world_structure():
    assert list_tasks("designed2") == sorted(W2)
    assert list_tasks("designed") == sorted(designed.SUITE)  # the first world is untouched
    assert set(W2).isdisjoint(designed.SUITE)
    for name in W2:
        d = designed.design(name)
        assert d.shift == 0 and get_task(name).classnames == d.classes
    # every task has exactly one fully related partner, its twin
    for t in W2:
        assert sum(designed.relatedness(s, t) == 1 for s in W2 if s != t) == 1
    assert designed.relatedness("gw2-shapes-b1", "gw2-shapes-a1") == 0.5
    assert designed.relatedness("gw2-textures-1", "gw2-shapes-a2") == 0
    assert designed.world_of(["gw2-shapes-a1", "gw2-textures-2"]) == "groundtruth2"
    with pytest.raises(MvlptError, match="not all of one designed world"):
        designed.world_of(["gw2-shapes-a1", "gt-shapes"])


def test_twins_are_independent_draws():
    a1, a2 = designed.generate("gw2-shapes-a1", "test"), designed.generate("gw2-shapes-a2", "test")
    assert a1[1].shape == a2[1].shape and not np.array_equal(a1[2], a2[2])


def _pairs(gain_of, tasks=W2, se=0.01):
    rows = [
        {"method": "coop", "source": s, "target": t, "gain": gain_of(s, t), "gain_se": se} for s in tasks for t in tasks if s != t
    ]
    return pd.DataFrame(rows)


def _runs(gain_of, tasks=W2, seeds=(1, 2, 3), noise=0.0, rng_seed=0):
    """A runs table whose per-seed gains are ``gain_of(s, t)`` plus seed noise (baselines 0.5)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for k in seeds:
        for t in tasks:
            rows.append({"method": "coop", "source": t, "target": t, "seed": k, "value": 0.5})
            for s in tasks:
                if s != t:
                    v = 0.5 + gain_of(s, t) + noise * rng.standard_normal()
                    rows.append({"method": "coop", "source": s, "target": t, "seed": k, "value": v})
    return pd.DataFrame(rows)


def test_primary_statistic_on_known_answers():
    exact = groundtruth.primary(_pairs(designed.relatedness), _runs(designed.relatedness), n_boot=200)
    assert exact.loc[0, "within_target"] == pytest.approx(1.0) and exact.loc[0, "met"]
    # noiseless seeds: every resample is the data itself, so the interval is the point
    assert exact.loc[0, "ci_low"] == pytest.approx(1.0) and exact.loc[0, "ci_high"] == pytest.approx(1.0)
    reverse = groundtruth.primary(_pairs(lambda s, t: -designed.relatedness(s, t)), n_boot=200)
    assert reverse.loc[0, "within_target"] == pytest.approx(-1.0) and not reverse.loc[0, "met"]
    assert np.isnan(reverse.loc[0, "ci_low"]) and reverse.loc[0, "interval"].startswith("none")
    # a pure source-quality world (the textures prompts bad everywhere) is not pair-specific
    quality = groundtruth.primary(_pairs(lambda s, t: -1.0 if "textures" in s else 0.0), n_boot=200)
    assert quality.loc[0, "within_target"] < groundtruth.THRESHOLD


def test_primary_interval_resamples_seeds_and_brackets_the_estimate():
    """The interval of noisy seeds contains the data's own statistic (the parametric redraw it replaced
    did not: it added the noise twice) and the vectorised draws equal the statistic computed resample by
    resample with :func:`within_target_mean`."""
    from mvlpt.analysis.gainstats import seed_gains, two_level_resamples

    effect = {1.0: 0.02, 0.5: -0.05, 0.0: -0.10}
    runs = _runs(lambda s, t: effect[designed.relatedness(s, t)], noise=0.05, rng_seed=3)
    per_seed, order, _ = seed_gains(runs, "coop", list(W2))
    mean = per_seed.mean(axis=0)  # NaN on the diagonal only
    pairs = pd.DataFrame(
        [
            {"method": "coop", "source": s, "target": t, "gain": mean[i, j]}
            for i, s in enumerate(order)
            for j, t in enumerate(order)
            if i != j
        ]
    )
    row = groundtruth.primary(pairs, runs, n_boot=400, seed=5).iloc[0]
    assert row["ci_low"] <= row["within_target"] <= row["ci_high"] and row["ci_low"] < row["ci_high"]

    draws = groundtruth._seed_target_draws(runs, "coop", list(W2), 50, np.random.default_rng(11))
    targets, mats = two_level_resamples(per_seed, 50, np.random.default_rng(11))
    for b in range(50):
        rhos = []
        for j, ti in enumerate(targets[b]):
            col = pd.DataFrame({"x": mats[b, :, j]}, index=order).rename(columns={"x": order[ti]})
            value, n = groundtruth.within_target_mean(col)
            if n:
                rhos.append(value)
        assert draws[b] == pytest.approx(np.mean(rhos))


def test_runs_table_is_found_beside_the_pairs(tmp_path):
    runs = _runs(designed.relatedness)
    assert groundtruth.runs_beside(tmp_path / "pairs.csv") is None
    runs.to_csv(tmp_path / "runs.csv", index=False)
    assert len(groundtruth.runs_beside(tmp_path / "pairs.parquet")) == len(runs)
    runs.drop(columns="seed").to_csv(tmp_path / "runs.csv", index=False)
    with pytest.raises(MvlptError, match="not a runs table"):
        groundtruth.runs_beside(tmp_path / "pairs.csv")


def test_power_simulation_responds_to_effect_and_noise():
    strong = groundtruth.simulate_power(W2, {1.0: 0.02, 0.5: -0.05, 0.0: -0.10}, 0.01, 0.005, 3, n_sim=100)
    none = groundtruth.simulate_power(W2, {1.0: 0.0, 0.5: 0.0, 0.0: 0.0}, 0.05, 0.01, 3, n_sim=100)
    assert strong[0] > 0.95 and none[0] < 0.05
    with pytest.raises(MvlptError, match="no effect given"):
        groundtruth.simulate_power(W2, {1.0: 0.0}, 0.05, 0.01, 3, n_sim=10)


@pytest.mark.slow
def test_reduced_world_zero_epoch_orders_twin_above_textures(tmp_path):
    """Declared before the full run (docs/groundtruth.md): CoOp, zero_epoch, gw2-shapes-a1, gw2-shapes-a2 and
    gw2-textures-1, three seeds, the world's settings: each shape twin gains more from the other twin's
    prompt than from the texture prompt."""
    from mvlpt.analysis import tables
    from mvlpt.training.config import RunSpec, TrainConfig
    from mvlpt.training.train import run
    from mvlpt.training.zero_epoch import run as zero_epoch

    tasks = ["gw2-shapes-a1", "gw2-shapes-a2", "gw2-textures-1"]
    train = TrainConfig(epochs=10, lr=0.01, batch_size=8, batch_size_multitask=16, warmup_epochs=0, head="per_task")
    results, seeds = tmp_path / "results", [1, 2, 3]
    common = dict(
        method="coop", seeds=seeds, shots=8, train=train, pretrained="synthetic", cache_dir=str(tmp_path / "cache"), device="cpu"
    )
    for t in tasks:
        run(
            RunSpec(
                tasks=[t],
                outputs={t: str(results / "coop" / f"{t}__{t}" / "seed{seed}.json")},
                save_prompts={t: str(tmp_path / "prompts" / t / "seed{seed}.safetensors")},
                **common,
            )
        )
    for s in tasks:
        for t in tasks:
            if s != t:
                zero_epoch(
                    RunSpec(
                        tasks=[t],
                        init_from=str(tmp_path / "prompts" / s / "seed{seed}.safetensors"),
                        outputs={t: str(results / "coop" / f"{s}__{t}" / "seed{seed}.json")},
                        **common,
                    )
                )
    pairs = tables.pair_table(tables.load_results(results))
    gain = pairs.set_index(["source", "target"])["gain"]
    assert gain["gw2-shapes-a2", "gw2-shapes-a1"] > gain["gw2-textures-1", "gw2-shapes-a1"]
    assert gain["gw2-shapes-a1", "gw2-shapes-a2"] > gain["gw2-textures-1", "gw2-shapes-a2"]


def test_predictors_are_scored_against_the_design():
    """``mvlpt predict score --against-design``: the measured gains are replaced by the designed relatedness, so
    the design itself as a predictor scores a within-target Spearman of 1 whatever was measured, and a
    predictor that tracked the (noise) measurement does not."""
    from mvlpt.transfer import predictor_scores

    rng = np.random.default_rng(0)
    noise = _pairs(lambda s, t: rng.standard_normal())
    base = pd.DataFrame([{"method": "coop", "source": t, "target": t, "gain": np.nan, "mean": 0.5} for t in W2])
    pairs = pd.concat([noise, base], ignore_index=True)
    design = groundtruth.design_as_gains(pairs)
    off = design[design["source"] != design["target"]]
    assert off["gain"].tolist() == [designed.relatedness(s, t) for s, t in zip(off["source"], off["target"])]
    assert "gain_se" not in design.columns and design.loc[design["source"] == design["target"], "mean"].eq(0.5).all()
    rel = pd.DataFrame([[designed.relatedness(s, t) for t in W2] for s in W2], index=W2, columns=W2)
    measured = noise.pivot_table(index="source", columns="target", values="gain").reindex(index=W2, columns=W2)
    preds = {"label_match": (rel, {"seconds": 0.0}), "visual_cosine": (measured, {"seconds": 0.0})}
    scores = predictor_scores.score_predictors(design, preds, methods=["coop"], n_boot=50, n_perm=0)
    wt = scores[(scores["against"] == "gain") & (scores["score"] == "within_target_spearman")].set_index("predictor")
    assert wt.loc["label_match", "estimate"] == pytest.approx(1.0)
    assert wt.loc["visual_cosine", "estimate"] < 0.6
    with pytest.raises(MvlptError, match="not all of one designed world"):
        groundtruth.design_as_gains(pairs.assign(source=pairs["source"].replace("gw2-shapes-a1", "gt-shapes")))

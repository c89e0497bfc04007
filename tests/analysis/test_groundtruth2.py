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


def test_primary_statistic_on_known_answers():
    exact = groundtruth.primary(_pairs(designed.relatedness), n_boot=200)
    assert exact.loc[0, "within_target"] == pytest.approx(1.0) and exact.loc[0, "met"]
    # redrawn cells break the designed ties, so even an exact world's interval lies below 1 (a tied design
    # cannot correlate perfectly with untied gains), but far above the threshold
    assert groundtruth.THRESHOLD < exact.loc[0, "ci_low"] <= exact.loc[0, "ci_high"] <= 1.0
    reverse = groundtruth.primary(_pairs(lambda s, t: -designed.relatedness(s, t)), n_boot=200)
    assert reverse.loc[0, "within_target"] == pytest.approx(-1.0) and not reverse.loc[0, "met"]
    # a pure source-quality world (the textures prompts bad everywhere) is not pair-specific
    quality = groundtruth.primary(_pairs(lambda s, t: -1.0 if "textures" in s else 0.0), n_boot=200)
    assert quality.loc[0, "within_target"] < groundtruth.THRESHOLD


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

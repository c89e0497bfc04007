"""The scatter figures' fit band bootstraps with the study's analysis.n_boot and seed (issue 23), like every
other interval of the study, not with seaborn's own 500 resamples."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from mvlpt.analysis import plots  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    rows = [("coop", f"t{i}", f"t{j}", rng.normal(0, 0.05), 0.0, rng.uniform()) for i in range(n) for j in range(n) if i != j]
    return pd.DataFrame(rows, columns=["method", "source", "target", "gain", "gain_rel", "visual_cosine"])


@pytest.fixture
def regplot_calls(monkeypatch):
    calls = []
    real = plots.sns.regplot

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(plots.sns, "regplot", spy)
    return calls


def _band(fig) -> np.ndarray:
    """The vertices of the fit's confidence band (seaborn draws it with fill_between)."""
    polys = [c for c in fig.axes[0].collections if type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection")]
    assert len(polys) == 1
    return np.asarray(polys[0].get_paths()[0].vertices)


def test_band_takes_the_resamples_and_seed_given(regplot_calls):
    data = _data()
    a = plots.scatter_gain_vs_similarity(data, "coop", ["visual_cosine"], n_boot=40, seed=1)
    b = plots.scatter_gain_vs_similarity(data, "coop", ["visual_cosine"], n_boot=40, seed=1)
    c = plots.scatter_gain_vs_similarity(data, "coop", ["visual_cosine"], n_boot=40, seed=2)
    assert [(k["n_boot"], k["seed"]) for k in regplot_calls] == [(40, 1), (40, 1), (40, 2)]
    assert np.array_equal(_band(a), _band(b))  # reproducible
    assert not np.array_equal(_band(a), _band(c))  # and drawn from the resamples of that seed


def test_band_defaults_to_the_analysis_defaults(regplot_calls):
    from mvlpt.study import settings

    plots.scatter_gain_vs_similarity(_data(), "coop", ["visual_cosine"])
    assert regplot_calls[0]["n_boot"] == settings.ANALYSIS_DEFAULTS["n_boot"] != 500
    assert regplot_calls[0]["seed"] == settings.ANALYSIS_DEFAULTS["seed"]


def test_workflow_passes_the_configured_resamples_to_the_scatter_jobs(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["analysis"] = {**(cfg.get("analysis") or {}), "n_boot": 123, "seed": 7}
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    snakemake = Path(sys.executable).parent / "snakemake"
    res = subprocess.run(
        [
            str(snakemake),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "results/figures/scatter_coop.png",
            "-n",
            "-p",
            "--configfile",
            str(configfile),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    commands = [line for line in out.splitlines() if line.startswith("Shell command: mvlpt plot scatter")]
    assert len(commands) == 1 and re.search(r"--n-boot 123 --seed 7 ", commands[0]), commands

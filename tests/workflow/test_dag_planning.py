"""What the default target plans over a study whose files all exist (made empty here, no training): nothing;
and with one result file deleted, its training job and what reads results. Fast stand-in for the slow
end-to-end test_workflow.py::test_deleting_one_result_reruns_only_what_depends_on_it.

It holds a trap of planning cost: `all` lists every result although the tables (its other inputs) read
them all; Snakemake rebuilds a missing file only where a job that has to run reads it, so without that
list a result deleted after its tables were made would never be rebuilt.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
CONFIG = REPO / "config" / "config.yaml"


def _dry_run(work: Path, quiet: bool = True) -> str:
    """A dry-run of the default target: the job table (quiet), or every job with its files."""
    res = subprocess.run(
        [
            str(SNAKEMAKE),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(work),
            "-n",
            *(["--quiet", "rules"] if quiet else []),
            "--rerun-triggers",
            "mtime",
            "--configfile",
            str(CONFIG),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    return out


def _counts(out: str) -> dict[str, int]:
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M) if rule != "total"}


def test_a_deleted_result_is_retrained_though_its_tables_exist(tmp_path):
    outputs = set()
    for line in _dry_run(tmp_path, quiet=False).splitlines():  # nothing exists yet: every job and its outputs
        m = re.match(r"\s+output: (.*)$", line)
        if m:
            outputs.update(f.strip() for f in m[1].split(", "))
    assert len(outputs) > 100
    stamp = time.time() - 3600
    for f in outputs:  # a finished study, every file as old as every other
        path = tmp_path / f
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path, (stamp, stamp))
    assert "Nothing to be done" in _dry_run(tmp_path)
    victim = sorted(
        f
        for f in outputs
        if re.fullmatch(r"results/vpt/[\w-]+__[\w-]+/seed1\.json", f)
        and f.split("/")[2].split("__")[0] != f.split("/")[2].split("__")[1]
    )[0]
    (tmp_path / victim).unlink()
    counts = _counts(_dry_run(tmp_path))
    assert counts.pop("train_joint") == 1, victim  # the joint run of the pair (it writes both directions)
    assert counts.pop("collect_results") == 1 and counts.pop("all") == 1
    assert set(counts) <= {
        "correlate_gain_similarity",
        "gain_heatmap",
        "gain_scatter",
        "summary_figure",
        "score_predictors",
        "predictors_figure",
        "power",
    }, counts

"""The multitask study's cost (mvlpt.running.cost.estimate_multitask) and its preflight checks
(mvlpt.running.multitask_check.multitask_problems): job counts by hand, GPU-hours that grow with k and epochs,
SoftCPT priced as CoOp plus its task prompts, one sentence per problem, the report's lines."""

import json
import subprocess
import sys

import pytest

from mvlpt.cli import main
from mvlpt.running import calibration, cost, multitask_check, preflight
from mvlpt.study import vocabulary

KINDS = ("source", "target", "joint")


def shape(n=4, seeds=2, stacked=True, epochs=10, task_prompt=12, classes=(10, 20, 30, 40, 50)):
    tasks = tuple(
        cost.TaskCost(
            f"t{i}",
            classes[i % len(classes)],
            8 * (i + 1),
            2 * (i + 1),
            100 * (i + 1),
            {"coop": 22, "upt": 10, "softcpt": 22},
            task_prompt,
        )
        for i in range(n)
    )
    return cost.StudyShape(tasks, ("coop", "vpt", "upt"), seeds, "joint", stacked, epochs, 32, 64, 100, 20)


def settings(**over):
    base = {"methods": ["coop", "softcpt"], "modes": ["init", "joint"], "strategies": ["all", "gain"], "k": 2}
    return vocabulary.multitask_settings({**base, **over}, ["coop", "vpt", "upt"])


CAL = calibration.shipped_calibration()


@pytest.mark.parametrize(
    "stacked, source, target, joint",
    [
        # coop: init x {all, gain}: a source and a target job per target (x 2 seeds unstacked); joint all: one run
        # of the 4 tasks, joint gain (k=2 < 3 others): one run per target; softcpt: one joint run. Joint runs
        # stack their seeds always.
        (True, 4 + 4, 4 + 4, 1 + 4 + 1),
        (False, 2 * (4 + 4), 2 * (4 + 4), 1 + 4 + 1),
    ],
)
def test_job_counts_by_hand_agree_with_the_study(stacked, source, target, joint):
    est = cost.estimate_multitask(shape(stacked=stacked), settings(), CAL)
    want = {"source": source, "target": target, "joint": joint, "total": source + target + joint}
    assert est["jobs"] == want
    counts = vocabulary.multitask_job_counts(4, settings(), 2, stacked)
    assert {k: counts[k] for k in want} == want
    assert est["per_method"]["softcpt"]["jobs"] == {"source": 0, "target": 0, "joint": 1, "total": 1}
    assert sum(r["jobs"] for r in est["per_method"]["coop"]["by_run"].values()) == want["total"] - 1
    assert est["exact"] is False and any("upper bound" in a for a in est["assumptions"])
    for kind in KINDS:
        assert est["gpu_hours"][kind] == pytest.approx(sum(m["gpu_hours"][kind] for m in est["per_method"].values()))
        assert est["gpu_hours"][kind] > 0


def test_groups_of_all_the_other_tasks_are_one_joint_run_and_exact():
    exact = cost.estimate_multitask(shape(), settings(strategies=["all"]), CAL)
    assert exact["exact"] is True and not any("upper bound" in a for a in exact["assumptions"])
    assert exact["jobs"] == {"source": 4, "target": 4, "joint": 2, "total": 10}
    # k >= the other tasks: every gain group is every other task, so it costs what strategy all costs
    wide = cost.estimate_multitask(shape(), settings(strategies=["gain"], k=3), CAL)["per_method"]["coop"]
    assert (
        wide["jobs"]["joint"]
        == 1
        == vocabulary.multitask_job_counts(4, settings(methods=["coop"], strategies=["gain"], k=3), 2)["joint"]
    )
    assert wide["gpu_hours"]["total"] == pytest.approx(exact["per_method"]["coop"]["gpu_hours"]["total"])


def test_gpu_hours_grow_with_k_and_epochs():
    by_k = [cost.estimate_multitask(shape(n=5), settings(strategies=["gain"], k=k), CAL)["gpu_hours"] for k in (1, 2, 3)]
    for kind in ("source", "joint", "total"):
        assert by_k[0][kind] < by_k[1][kind] < by_k[2][kind], kind
    assert by_k[0]["target"] == pytest.approx(by_k[2]["target"])  # a target is fine-tuned on itself alone
    short, long_ = (cost.estimate_multitask(shape(epochs=e), settings(), CAL)["gpu_hours"] for e in (5, 10))
    for kind in KINDS:
        assert long_[kind] > short[kind]


def test_softcpt_is_coop_plus_its_task_prompts():
    """No SoftCPT figures in the shipped calibration: CoOp's coefficients, plus the task prompts' tokens."""
    assert "softcpt" not in CAL.methods
    joint_all = settings(methods=["coop", "softcpt"], modes=["joint"], strategies=["all"])
    plain = cost.estimate_multitask(shape(task_prompt=0), joint_all, CAL)["per_method"]
    assert plain["softcpt"]["gpu_hours"]["total"] == pytest.approx(plain["coop"]["gpu_hours"]["total"])
    prompted = cost.estimate_multitask(shape(task_prompt=12), joint_all, CAL)
    assert prompted["per_method"]["softcpt"]["gpu_hours"]["total"] > plain["softcpt"]["gpu_hours"]["total"]
    assert prompted["per_method"]["coop"]["gpu_hours"]["total"] == pytest.approx(plain["coop"]["gpu_hours"]["total"])
    assert any(
        a.startswith("softcpt: the calibration has no figures of its own: priced with coop's") for a in prompted["assumptions"]
    )
    # the step: the task prompts' tokens at CoOp's per-token rate
    extra = CAL.step_s("softcpt", seeds=3, classes=100, length=22, batch=64, task_tokens=50) - CAL.step_s(
        "coop", seeds=3, classes=100, length=22, batch=64
    )
    assert extra == pytest.approx(3 * 50 * CAL.methods["coop"]["step"]["text_us_per_token"] / 1e6)


def test_what_a_method_learns_comes_from_the_study_vocabulary():
    # VPT learns no text prompt: its step does not grow with classes x length; CoOp learns no image prompt
    assert CAL.step_s("vpt", seeds=3, classes=10, length=5, batch=64) == CAL.step_s(
        "vpt", seeds=3, classes=900, length=40, batch=64
    )
    assert CAL.step_s("coop", seeds=3, classes=10, length=5, batch=8) == CAL.step_s(
        "coop", seeds=3, classes=10, length=5, batch=256
    )
    assert (
        CAL.step_s("upt", seeds=3, classes=10, length=5, batch=8)
        < CAL.step_s("upt", seeds=3, classes=900, length=5, batch=8)
        < CAL.step_s("upt", seeds=3, classes=900, length=5, batch=256)
    )


# --------------------------------------------------------------------------------------------------
# preflight: the multitask section's problems
# --------------------------------------------------------------------------------------------------
TASKS4 = ["shapes", "shape-colours", "texture-colours", "glyph-digits"]


def mt_cfg(section, tasks=TASKS4, methods=("coop", "vpt"), **top):
    return {"tasks": list(tasks), "methods": list(methods), "multitask": section, **top}


@pytest.mark.parametrize(
    "cfg, says",
    [
        (
            mt_cfg({"methods": ["coop", "nope"]}),
            f"multitask: unknown method(s) nope in `methods`; choose from {', '.join(vocabulary.METHODS)}.",
        ),
        (
            mt_cfg({"methods": ["upt"]}),
            "multitask: method upt is not among the study's `methods` (coop, vpt), whose pairwise results",
        ),
        (
            mt_cfg({"methods": ["softcpt"]}, methods=["vpt"]),
            "multitask: method softcpt is compared with coop's single-task results, so the study's `methods` must include coop.",
        ),
        (mt_cfg({"k": 0}), "multitask: `k` (sources per group) must be an integer >= 1, got 0."),
        (mt_cfg({"similarity": "cosine"}), "multitask: `similarity` must be a similarity measure (visual_cosine, "),
        (mt_cfg({"predictor": "oracle"}), "multitask: `predictor` must be a transferability predictor (leep, "),
        (
            mt_cfg({"strategies": ["predictor"], "predictor": "prompt_accuracy"}, predictors={"names": ["leep", "nce"]}),
            "multitask: strategy predictor reads predictor prompt_accuracy, which the study does not compute; add it to "
            "`predictors.names` or choose one of leep, nce.",
        ),
        (
            mt_cfg({"strategies": ["all", "gain", "similarity"]}, tasks=TASKS4[:2]),
            "multitask: strategies gain, similarity rank the other tasks, which needs at least 3 tasks (the config has 2)",
        ),
        (
            mt_cfg({"strategies": ["predictor"]}, tasks=TASKS4[:2]),
            "multitask: strategy predictor ranks the other tasks, which needs",
        ),
        (mt_cfg({"modes": ["init", "both"]}), "multitask: unknown mode(s) both in `modes`; choose from init, joint."),
        (mt_cfg({"strategy": ["all"]}), "multitask: unknown setting(s) strategy; the settings are methods, modes, "),
        (mt_cfg({}, tasks=TASKS4[:1]), "multitask: the multitask study needs at least 2 tasks, the config has 1."),
        (mt_cfg(["coop"]), "multitask: the section must be a mapping of settings"),
    ],
)
def test_each_multitask_problem_is_one_sentence(cfg, says):
    found = multitask_check.multitask_problems(cfg)
    assert len(found) == 1 and found[0].startswith(says), found
    assert found[0].endswith(".") and ". " not in found[0].rstrip(".")


@pytest.mark.parametrize(
    "cfg",
    [
        {"tasks": TASKS4[:2], "methods": ["coop"]},  # no section: no multitask study
        {"tasks": TASKS4[:2], "methods": ["coop"], "multitask": None},
        mt_cfg({}),  # defaults apply: the study's methods, label_match, prompt_accuracy
        mt_cfg({"strategies": ["all", "random"]}, tasks=TASKS4[:2]),  # neither ranks: 2 tasks will do
        mt_cfg({"methods": ["softcpt"], "strategies": ["gain"]}, tasks=TASKS4[:2]),  # softcpt trains on all tasks only
        mt_cfg({"strategies": ["gain"], "predictor": "leep"}, predictors={"names": ["nce"]}),  # predictor unused
        mt_cfg({"strategies": ["predictor"], "predictor": "leep"}, predictors={"names": ["leep"]}),
    ],
)
def test_sound_multitask_sections_have_no_problem(cfg):
    assert multitask_check.multitask_problems(cfg) == []


def test_multitask_problems_imports_nothing_slow():
    code = (
        "import sys; from mvlpt.running.multitask_check import multitask_problems; "
        "p = multitask_problems({'tasks': ['a', 'b'], 'multitask': {'k': 0}}); "
        "assert p and p[0].startswith('multitask: `k`'), p; "
        "slow = [m for m in ('torch', 'numpy', 'open_clip', 'pandas') if m in sys.modules]; assert not slow, slow"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------------
# preflight: the report
# --------------------------------------------------------------------------------------------------
def test_report_prints_and_writes_the_multitask_jobs_and_gpu_hours(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MVLPT_COST_CALIBRATION", str(tmp_path / "user-calibration.json"))
    cfg = mt_cfg(
        {"methods": ["coop", "softcpt"], "strategies": ["all", "gain"], "k": 2},
        methods=["coop"],
        seeds=[1, 2],
        train={"epochs": 2},
        results_dir=str(tmp_path / "results"),
        cache_dir=str(tmp_path / "cache"),
    )
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    out_json = tmp_path / "report.json"
    assert main(["preflight", "--configfile", str(path), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    rep = json.loads(out_json.read_text())
    mt = rep["cost"]["multitask"]
    counts = vocabulary.multitask_job_counts(4, vocabulary.multitask_settings(cfg["multitask"], ["coop"]), 2, True)
    assert mt["jobs"] == {k: counts[k] for k in (*KINDS, "total")} and mt["exact"] is False
    assert rep["cost"]["with_multitask"]["jobs"] == rep["cost"]["jobs"] + counts["total"]
    assert rep["cost"]["with_multitask"]["gpu_hours"] == pytest.approx(rep["cost"]["gpu_hours"] + mt["gpu_hours"]["total"])
    assert "multitask study (modes init, joint; strategies all, gain; k = 2, an upper bound):" in out
    j = mt["per_method"]["coop"]["jobs"]
    assert f"({j['total']} jobs: {j['source']} group source, {j['target']} target, {j['joint']} joint)" in out
    assert "softcpt: the calibration has no figures of its own" in out
    # the same config without the section, or told to leave it out: no multitask study
    assert "multitask" not in preflight.run({k: v for k, v in cfg.items() if k != "multitask"}).cost
    assert "multitask" not in preflight.run(cfg, multitask=False).cost
    # a problem in the section stops the study, and it is not priced
    bad = preflight.run({**cfg, "multitask": {"methods": ["upt"]}})
    assert [p for p in bad.problems if p.startswith("multitask:")] and "multitask" not in bad.cost


def test_the_workflow_checks_the_multitask_study_only_when_asked(tmp_path, monkeypatch):
    """A validated config always has the section (the schema's default); the workflow says whether its
    targets include the multitask study."""
    monkeypatch.setenv("MVLPT_COST_CALIBRATION", str(tmp_path / "user-calibration.json"))
    cfg = mt_cfg(
        {"strategies": ["all", "gain"]},
        tasks=TASKS4[:2],
        methods=["coop"],
        seeds=[1],
        results_dir=str(tmp_path / "results"),
        cache_dir=str(tmp_path / "cache"),
    )
    assert not [p for p in preflight.problems(cfg) if p.startswith("multitask:")]
    found = [p for p in preflight.problems(cfg, multitask=True) if p.startswith("multitask:")]
    assert found == [
        "multitask: strategy gain ranks the other tasks, which needs at least 3 tasks (the config has 2); add tasks or drop it."
    ]


@pytest.mark.parametrize("stacked", [True, False])
def test_zero_epoch_mode_is_one_untrained_job_per_method(stacked):
    """mode zero_epoch (workflow/rules/zero_epoch.smk): the baselines train, then one job per method (per seed
    unstacked) evaluates every cell: no training time beyond the baselines', and far below sequential."""
    import dataclasses

    base = shape(n=5, stacked=stacked)
    zero = cost.estimate(dataclasses.replace(base, mode="zero_epoch"), CAL)
    seq = cost.estimate(dataclasses.replace(base, mode="sequential"), CAL)
    copies = 1 if stacked else base.seeds
    for method in base.methods:
        z, s = zero["per_method"][method], seq["per_method"][method]
        features = 5 if method == "coop" else 0  # coop's frozen-feature jobs, one per task
        assert z["jobs"] == 5 * copies + copies + features
        assert s["jobs"] == 5 * copies + 5 * 4 * copies + features
        assert z["breakdown_h"]["train"] == pytest.approx(s["breakdown_h"]["train"] / 5)  # the 5 baselines only
        assert 0 < z["gpu_hours"] < s["gpu_hours"]

"""The typed study config (mvlpt.study.settings, issue 23): one schema as package data, the one home of the
defaults; one check (settings.load); nothing in the package reads the workflow's files."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from mvlpt.errors import MvlptError
from mvlpt.running import device_check, preflight
from mvlpt.study import settings, vocabulary
from mvlpt.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "config").glob("*.yaml"))


def read(path):
    return yaml.safe_load(Path(path).read_text())


# --------------------------------------------------------------------------------------------------
# The schema: package data, the one home of the defaults
# --------------------------------------------------------------------------------------------------
def test_the_schema_is_package_data():
    path = settings.schema_path()
    assert path.is_file() and path.parent == Path(settings.__file__).parent
    assert "config.schema.yaml" in (REPO / "pyproject.toml").read_text()  # shipped with the package
    assert not (REPO / "workflow" / "schemas" / "config.schema.yaml").exists()  # no second copy


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_fill_defaults_is_snakemakes_validate(path):
    """The workflow's config after settings.load is what Snakemake's validate would make of it (once the config's
    protocol has set its values, mvlpt.study.protocol.apply: nothing under `corrected`)."""
    from snakemake.utils import validate

    from mvlpt.study import protocol

    cfg = read(path)
    expected = copy.deepcopy(cfg)
    validate(expected, str(settings.schema_path()))
    assert settings.fill_defaults(copy.deepcopy(cfg)) == expected
    preset = protocol.apply(copy.deepcopy(cfg))
    assert (preset == cfg) == (expected["protocol"] == "corrected")
    validate(preset, str(settings.schema_path()))
    assert settings.load(cfg).as_dict() == preset


@pytest.mark.parametrize(
    "section, defaults",
    [
        ("analysis", settings.ANALYSIS_DEFAULTS),
        ("similarity", settings.SIMILARITY_DEFAULTS),
        ("predictors", settings.PREDICTOR_DEFAULTS),
        ("multitask", settings.MULTITASK_DEFAULTS),
    ],
)
def test_section_defaults_come_from_the_schema(section, defaults):
    props = settings.schema()["properties"][section]["properties"]
    assert list(defaults) == list(props)
    for key, value in defaults.items():
        assert value == props[key].get("default"), key  # None: "the study's own", the schema states none


def test_the_settings_functions_read_the_one_home():
    assert vocabulary.analysis_settings(None) == dataclasses.asdict(settings.AnalysisSettings())
    assert vocabulary.similarity_settings({"ridge": 0.5}) == {**settings.SIMILARITY_DEFAULTS, "ridge": 0.5}
    assert vocabulary.multitask_settings(None, ["coop"])["methods"] == ["coop", "softcpt"]
    assert vocabulary.predictor_settings(None)["names"] == list(vocabulary.PREDICTORS)
    # the old copies are gone
    for name in ("ANALYSIS_DEFAULTS", "SIMILARITY_DEFAULTS", "MULTITASK_DEFAULTS", "PREDICTOR_DEFAULTS"):
        assert not hasattr(vocabulary, name), name
    assert not hasattr(preflight, "FALLBACK_DEFAULTS") and not hasattr(preflight, "config_defaults")


def test_a_changed_schema_default_reaches_every_reader(monkeypatch):
    """Defaults are read from the schema, not restated: a schema with another default gives it."""
    changed = settings.schema()
    changed["properties"]["shots"]["default"] = 7
    changed["properties"]["analysis"]["properties"]["n_boot"]["default"] = 123
    monkeypatch.setattr(settings, "_schema", lambda: changed)
    cfg = settings.fill_defaults({"tasks": ["shapes"]})
    assert cfg["shots"] == 7 and cfg["analysis"]["n_boot"] == 123
    assert settings.section_defaults("analysis")["n_boot"] == 123


def test_train_defaults_are_trainconfigs_only():
    props = settings.schema()["properties"]["train"]["properties"]
    assert not any("default" in p for p in props.values())  # TrainConfig states them, once
    loaded = settings.load({"tasks": ["shapes"], "train": {"epochs": 3}})
    assert loaded.train == TrainConfig(epochs=3) and loaded.train_options == {"epochs": 3}


# --------------------------------------------------------------------------------------------------
# settings.load: typed, checked once, one sentence
# --------------------------------------------------------------------------------------------------
def test_load_types_the_demo_config():
    cfg = read(REPO / "config" / "config.yaml")
    s = settings.load(cfg)
    assert s.tasks == tuple(cfg["tasks"]) and s.methods == tuple(cfg.get("methods", settings.DEFAULTS["methods"]))
    assert isinstance(s.model, settings.ModelSettings) and s.model.name == cfg["model"]["name"]
    assert isinstance(s.analysis, settings.AnalysisSettings) and isinstance(s.train, TrainConfig)
    assert s.similarity.shots is None  # the study's own
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.shots = 3
    assert "analysis" not in cfg or cfg["analysis"] == read(REPO / "config" / "config.yaml")["analysis"]  # not changed


@pytest.mark.parametrize(
    "cfg, needle",
    [
        ({"tasks": ["shapes"], "shots": 0}, "shots"),
        ({"tasks": ["shapes"], "nonsense": 1}, "nonsense"),
        ({"tasks": ["no-such-task"]}, "no-such-task"),
        ({"tasks": ["shapes", "shapes"]}, "more than once"),
        ({"tasks": ["shapes"], "train": {"lr": -1.0}}, "lr"),
        ({"tasks": ["shapes"], "train": {"lr": "2e-3"}}, "2e-3"),
        ({"tasks": ["shapes"], "analysis": {"model_measures": ["nope"]}}, "nope"),
        (["shapes"], "mapping"),
    ],
)
def test_load_refuses_in_one_sentence(cfg, needle):
    with pytest.raises(MvlptError) as e:
        settings.load(cfg)
    msg = str(e.value)
    assert msg.startswith("invalid config: ") and needle in msg
    assert "\n" not in msg and msg.endswith(".") and msg.count(". ") == 0


def test_load_checks_the_multitask_section_when_asked():
    cfg = {"tasks": ["shapes", "shape-colours", "glyph-digits"], "methods": ["coop"], "multitask": {"methods": ["vpt"]}}
    settings.load(cfg)  # not asked: the section's schema only
    with pytest.raises(MvlptError, match="multitask: method vpt is not among the study's `methods`"):
        settings.load(cfg, multitask=True)


def test_preflight_applies_the_same_rules():
    cfg = {"tasks": ["shapes"], "train": {"epochs": 0}}
    with pytest.raises(MvlptError) as e:
        settings.load(cfg)
    clause = str(e.value).removeprefix("invalid config: ").rstrip(".")
    assert settings.problems(cfg) == [clause]
    assert preflight.run(cfg).problems[0] == f"config: {clause}."


# --------------------------------------------------------------------------------------------------
# The package does not read the workflow's files
# --------------------------------------------------------------------------------------------------
def test_nothing_in_the_package_reads_the_workflow_by_path():
    pattern = re.compile(r"""["']workflow["']|["']workflow/|parents\[1\]\s*/\s*["']workflow""")
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "mvlpt").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
    assert not hasattr(preflight, "GPU_RULES") and not hasattr(preflight, "SLURM_PROFILE")
    assert "workflow/schemas" not in (REPO / "workflow" / "rules" / "config.smk").read_text()


def test_slurm_profile_is_read_only_when_given(tmp_path):
    assert device_check.slurm_profile(None) is None
    with pytest.raises(MvlptError, match="does not exist"):
        device_check.slurm_profile(tmp_path / "nowhere")
    prof = tmp_path / "slurm"
    prof.mkdir()
    (prof / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "executor": "slurm",
                "jobs": 7,
                "default-resources": {"slurm_partition": "gpu"},
                "set-resources": {"train_joint": {"gpu_model": "a100"}, "fewshot_split": {"group_slots": 1}},
            }
        )
    )
    # the workflow names its GPU rules
    got = device_check.slurm_profile(prof, ["train_single", "train_joint"])
    assert set(got["rules"]) == {"train_single", "train_joint"} and got["jobs"] == 7
    assert got["rules"]["train_joint"]["gpu_request"] == "--gpus=a100:1"
    assert got["rules"]["train_single"] == {"partition": "gpu", "gpu_request": "--gpus=1", "account": None}
    # `mvlpt preflight --profile`: the rules the profile sets up, and one entry for every other GPU rule
    got = device_check.slurm_profile(prof / "config.yaml")
    assert set(got["rules"]) == {"train_joint", device_check.DEFAULT_RULE}


def test_the_shipped_slurm_profile_reads_back():
    got = device_check.slurm_profile(REPO / "workflow" / "profiles" / "slurm", ["train_single"])
    assert got["executor"] == "slurm" and got["rules"]["train_single"]["gpu_request"] == "--gpus=1"


# --------------------------------------------------------------------------------------------------
# The hateful-memes metric: config -> job option (no environment variable, no re-registered task)
# --------------------------------------------------------------------------------------------------
def test_runspec_refuses_an_unknown_hateful_memes_metric():
    from mvlpt.training.config import RunSpec

    with pytest.raises(MvlptError, match="hateful_memes_metric must be one of roc_auc, accuracy"):
        RunSpec(method="coop", tasks=["shapes"], hateful_memes_metric="f1").validate()


def test_the_workflow_passes_the_hateful_memes_metric_as_an_option(tmp_path):
    import shutil
    import subprocess
    import sys

    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent))
    if snakemake is None:
        pytest.skip("no snakemake")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "tasks": ["hateful-memes", "cifar-10"],
                "methods": ["coop"],
                "seeds": [1],
                "elevater": {"hateful_memes_metric": "accuracy"},
                "preflight": False,
                "results_dir": str(tmp_path / "r"),
                "cache_dir": str(tmp_path / "c"),
            }
        )
    )
    res = subprocess.run(
        [
            snakemake,
            "-n",
            "-p",
            "--configfile",
            str(cfg),
            "--directory",
            str(REPO),
            "-s",
            str(REPO / "Snakefile"),
            str(tmp_path / "r" / "coop" / "hateful-memes__hateful-memes" / "seed1.json"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "mvlpt train --hateful-memes-metric accuracy" in res.stdout
    assert "MVLPT_HATEFUL_MEMES_METRIC" not in res.stdout


def test_command_line_choices_mirror_the_schema():
    """The options that mirror a config key take their choices and default from the schema, and the
    schema allows what the code implements."""
    from mvlpt.analysis import gainstats
    from mvlpt.cli import build_parser
    from mvlpt.tasks import fewshot

    assert settings.choices("analysis", "fdr") == list(gainstats.FDR_METHODS)
    assert settings.choices("fewshot_policy") == list(fewshot.POLICIES)
    assert fewshot.DEFAULT_POLICY == settings.DEFAULTS["fewshot_policy"]
    args = build_parser().parse_args(["split", "--task", "shapes", "--seed", "1", "--shots", "2", "--out", "x.json"])
    assert args.policy == settings.DEFAULTS["fewshot_policy"]


def test_building_the_command_line_imports_no_pandas():
    """Every job starts `mvlpt VERB`: building the parser stays cheap (no pandas, numpy nor torch)."""
    import subprocess
    import sys

    code = (
        "import sys, mvlpt.cli; mvlpt.cli.build_parser(); "
        "print(sorted(m for m in ('pandas', 'numpy', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_the_workflow_names_its_gpu_rules(tmp_path):
    """Preflight's SLURM read-back covers the rules that declare a GPU, as the workflow knows them (no
    list of rule names in the package to drift)."""
    import shutil
    import subprocess
    import sys

    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent))
    if snakemake is None:
        pytest.skip("no snakemake")
    wrapper = tmp_path / "Snakefile"
    wrapper.write_text(f'include: "{REPO / "Snakefile"}"\nprint("GPU_RULES", " ".join(sorted(gpu_rules())), file=sys.stderr)\n')
    res = subprocess.run(
        [
            snakemake,
            "-s",
            str(wrapper),
            "-d",
            str(REPO),
            "-n",
            "--config",
            "preflight=false",
            f"results_dir={tmp_path / 'r'}",
            f"cache_dir={tmp_path / 'c'}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    line = next((x for x in res.stderr.splitlines() if x.startswith("GPU_RULES")), None)
    assert line is not None, res.stderr[-2000:]
    rules = set(line.split()[1:])
    assert {
        "train_single",
        "train_joint",
        "frozen_features",
        "embed_task_images",
        "reference_zeroshot",
        "reference_linear_probe",
        "train_group_source",
        "train_group_target",
        "train_group_joint",
    } <= rules
    assert not rules & {"fewshot_split", "similarity", "collect_results", "all", "embed_task_labels"}


def test_a_checked_config_is_typed_without_the_checks(monkeypatch):
    """A cluster job parses the workflow again with the config its main process checked: it is typed only."""
    from mvlpt.study import configcheck

    def refuse(*a, **k):
        raise AssertionError("checked again")

    monkeypatch.setattr(configcheck, "rule_problems", refuse)
    cfg = read(REPO / "config" / "config.yaml")
    assert settings.load(cfg, checked=True).as_dict() == settings.fill_defaults(copy.deepcopy(cfg))
    with pytest.raises(AssertionError, match="checked again"):
        settings.load(cfg)


def test_the_benchmark_prices_the_paper_config_through_settings():
    """benchmarks/transfer keeps no fallback config: the paper's, checked and over the package's defaults."""
    import sys

    sys.path.insert(0, str(REPO))
    try:
        from benchmarks.transfer.common import load_paper_config
    finally:
        sys.path.remove(str(REPO))
    paper = load_paper_config()
    cfg = read(REPO / "config" / "elevater.yaml")
    loaded = settings.load(cfg)
    assert paper["tasks"] == list(loaded.tasks) and paper["methods"] == list(loaded.methods)
    assert paper["shots"] == loaded.shots and paper["train"]["epochs"] == loaded.train.epochs
    for m in loaded.methods:  # every option of each method, the config's over the learner's own
        assert paper["method_options"][m] == vocabulary.full_options(m, loaded.method_options.get(m))
    with pytest.raises(MvlptError):
        load_paper_config(REPO / "config" / "no-such.yaml")


def test_a_shots_list_is_a_study_per_count_below_its_folder_and_a_scalar_keeps_its_paths():
    scalar = settings.load({"tasks": ["shapes"], "shots": 5})
    assert scalar.shots == 5 and scalar.shot_counts == (5,) and not settings.shot_axis(scalar.as_dict())
    assert settings.shot_study(scalar.as_dict(), 5) == scalar.as_dict()  # a scalar study is its own, paths unchanged
    axis = settings.load({"tasks": ["shapes"], "shots": [20, 1, 5], "results_dir": "out", "cache_dir": "c"})
    assert axis.shots == (20, 1, 5) and axis.shot_counts == (20, 1, 5)
    one = settings.shot_study(axis.as_dict(), 1)
    assert (one["shots"], one["results_dir"], one["cache_dir"]) == (1, "out/shots1", "c/shots1")
    assert settings.load(one).shots == 1  # a valid single-shot study
    with pytest.raises(MvlptError, match="shot count 3 is not among the config's shots"):
        settings.shot_study(axis.as_dict(), 3)


@pytest.mark.parametrize(
    "shots, needle",
    [
        ([5, 5], "shots: 5 listed more than once"),
        ([1, 0], "shots: [1, 0] is neither a number of images per class"),
        ("5", "shots: '5' is neither"),
        ([], "shots: [] is neither"),
        ({"a": 1}, "is neither"),
    ],
)
def test_nonsense_shots_are_refused_in_one_sentence(shots, needle):
    with pytest.raises(MvlptError) as e:
        settings.load({"tasks": ["shapes"], "shots": shots})
    msg = str(e.value)
    assert needle in msg and msg.startswith("invalid config: ") and msg.count(". ") == 0 and msg.endswith(".")


def test_table1_study_is_the_papers_setting_below_its_folder():
    t1 = settings.table1_study({"tasks": ["shapes"], "methods": ["coop", "vpt"], "shots": [1, 5], "results_dir": "out"})
    d = settings.TABLE1_DEFAULTS
    assert len(d["sources"]) == 11 and len(d["targets"]) == 12 and d["shots"] == 5
    assert "imagenet" in d["sources"] and "hateful-memes" in d["targets"] and not set(d["sources"]) & set(d["targets"])
    assert t1["tasks"] == [*d["sources"], *d["targets"]] and t1["shots"] == 5 and t1["results_dir"] == "out/table1"
    mt = {"methods": ["coop", "vpt"], "modes": ["init"], "strategies": ["fixed"], "sources": d["sources"]}
    if "source_prompt" in settings.MULTITASK_DEFAULTS:  # the reference protocol's option (issue 27, part 1)
        mt["source_prompt"] = "averaged"
    assert t1["multitask"] == mt
    with pytest.raises(MvlptError, match="table1: dtd listed as source and as target"):
        settings.table1_study({"tasks": ["shapes"], "table1": {"targets": ["dtd"]}})

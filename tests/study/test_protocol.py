"""The two named protocols (issue 27): ``protocol: reference`` sets every point of mvlpt.study.protocol.POINTS, a
key the config sets wins over the preset, ``corrected`` (the default) is the options' own defaults, so existing
studies and their hashes stay what they were. The runs' side of each point: tests/training/test_protocol_points.py."""

import copy
import inspect

import pytest
import yaml

from mvlpt.errors import MvlptError
from mvlpt.models.prompts.upt import UPT
from mvlpt.study import protocol, settings
from mvlpt.training.config import RunSpec, TrainConfig

BASE = {"tasks": ["shapes", "shape-colours"], "methods": ["coop", "upt"]}


def value_at(cfg: dict, key: tuple) -> object:
    for k in key:
        cfg = cfg[k]
    return cfg


def with_key(cfg: dict, key: tuple, value) -> dict:
    cfg = copy.deepcopy(cfg)
    node = cfg
    for k in key[:-1]:
        node = node.setdefault(k, {})
    node[key[-1]] = value
    return cfg


def test_reference_sets_every_point():
    study = settings.load({**BASE, "protocol": "reference"})
    full = study.as_dict()
    assert study.protocol == "reference"
    for point in protocol.POINTS:
        assert value_at(full, point.key) == point.reference, point.name
    # and the typed views the workflow and `mvlpt train` read
    assert (study.train.joint_checkpoint, study.train.joint_fewshot, study.train.joint_order, study.train.precision) == (
        "mean_val",
        "union",
        "fixed",
        "fp16",
    )
    assert study.elevater.hateful_memes_metric == "accuracy"
    assert study.method_options["upt"]["mix"] == "per_token"
    assert study.multitask.source_prompt == "averaged"
    assert study.multitask.task_conditioned_train == {"epochs": 50, "batch_size_multitask": 32, "select": "last"}


@pytest.mark.parametrize("point", protocol.POINTS, ids=lambda p: p.name)
def test_a_key_the_config_sets_wins_over_the_preset(point):
    ours = "roc_auc" if point.corrected is None else point.corrected  # hateful-memes: None is ELEVATER's, ROC-AUC
    cfg = with_key({**BASE, "protocol": "reference"}, point.key, ours)
    full = settings.load(cfg).as_dict()
    assert value_at(full, point.key) == ours
    others = [p for p in protocol.POINTS if p.key != point.key]
    assert all(value_at(full, p.key) == p.reference for p in others), "the other points keep the preset"


def test_a_method_option_given_for_upt_keeps_the_preset_for_its_other_keys():
    full = settings.load({**BASE, "protocol": "reference", "method_options": {"upt": {"n_ctx": 4}}}).as_dict()
    assert full["method_options"]["upt"] == {"n_ctx": 4, "mix": "per_token"}


def test_corrected_is_the_options_own_defaults_and_changes_no_config():
    """corrected's values are the defaults of the options themselves, so a config without the key, or with
    `protocol: corrected`, is filled exactly as before the key existed (same job params, same hashes)."""
    train = TrainConfig()
    schema_mt = settings.MULTITASK_DEFAULTS
    upt_mix = inspect.signature(UPT.__init__).parameters["mix"].default
    defaults = {
        ("train", "joint_checkpoint"): train.joint_checkpoint,
        ("train", "joint_fewshot"): train.joint_fewshot,
        ("train", "joint_order"): train.joint_order,
        ("train", "precision"): train.precision,
        ("elevater", "hateful_memes_metric"): settings.ELEVATER_DEFAULTS["hateful_memes_metric"],
        ("method_options", "upt", "mix"): upt_mix,
        ("multitask", "source_prompt"): schema_mt["source_prompt"],
        ("multitask", "task_conditioned_train"): schema_mt["task_conditioned_train"],
    }
    assert {p.key: p.corrected for p in protocol.POINTS} == defaults
    assert protocol.preset("corrected") == {}
    plain, named = settings.load(dict(BASE)).as_dict(), settings.load({**BASE, "protocol": "corrected"}).as_dict()
    assert plain == named and plain["protocol"] == "corrected"
    assert plain["train"] == {} and plain["method_options"] == {} and "hateful_memes_metric" not in plain["elevater"]


def test_options_at_their_defaults_leave_the_config_hash_unchanged():
    """The new train options are hashed only away from their defaults: the hash of every existing run stays."""
    before = {
        "epochs", "lr", "momentum", "weight_decay", "warmup_epochs", "warmup_lr", "batch_size",
        "batch_size_multitask", "head", "precision", "select",
    }  # fmt: skip
    assert set(TrainConfig().hashable()) == before
    spec = RunSpec(method="coop", tasks=["shapes", "shape-colours"])
    explicit = RunSpec(
        method="coop",
        tasks=["shapes", "shape-colours"],
        train=TrainConfig(joint_checkpoint="per_task", joint_order="reshuffle", joint_fewshot="split_files"),
        protocol="corrected",
    )
    assert spec.config_hash(1) == explicit.config_hash(1) and spec.setting_hash() == explicit.setting_hash()
    for key, value in (
        ("joint_checkpoint", "mean_val"),
        ("joint_order", "fixed"),
        ("joint_fewshot", "union"),
        ("precision", "fp16"),
    ):
        other = RunSpec(method="coop", tasks=["shapes", "shape-colours"], train=TrainConfig(**{key: value}))
        assert other.config_hash(1) != spec.config_hash(1), key


def test_bad_values_are_one_sentence():
    with pytest.raises(MvlptError, match=r"protocol: 'paper' is not one of \['corrected', 'reference'\]"):
        settings.load({**BASE, "protocol": "paper"})
    with pytest.raises(MvlptError, match="joint_checkpoint must be per_task or mean_val"):
        settings.load({**BASE, "train": {"joint_checkpoint": "mean"}})
    with pytest.raises(MvlptError, match="precision must be one of auto, fp32, bf16, fp16"):
        TrainConfig(precision="half").validate()
    with pytest.raises(MvlptError, match="multitask.task_conditioned_train: epochs must be >= 1"):
        settings.load({**BASE, "multitask": {"task_conditioned_train": {"epochs": 0}}})
    with pytest.raises(MvlptError, match="protocol must be one of corrected, reference"):
        RunSpec(method="coop", tasks=["shapes"], protocol="paper").validate()


def test_run_defaults_are_what_mvlpt_train_puts_under_the_given_options():
    ref = protocol.run_defaults("reference")
    assert ref == {
        "train": {"joint_checkpoint": "mean_val", "joint_fewshot": "union", "precision": "fp16", "joint_order": "fixed"},
        "method_options": {"upt": {"mix": "per_token"}},
        "hateful_memes_metric": "accuracy",
    }
    assert protocol.run_defaults("corrected") == {"train": {}, "method_options": {}, "hateful_memes_metric": None}


def test_the_paper_config_runs_the_reference_protocol():
    from studies import REPO

    cfg = yaml.safe_load((REPO / "config" / "elevater.yaml").read_text())
    study = settings.load(cfg)
    assert study.protocol == "reference"
    full = study.as_dict()
    assert all(value_at(full, p.key) == p.reference for p in protocol.POINTS), "elevater.yaml overrides no point"

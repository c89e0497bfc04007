"""The study vocabulary (mvlpt.study) and the places that must agree with it.

* The workflow's config schema (workflow/schemas/config.schema.yaml) names the methods and states the
  analysis and similarity defaults; TrainConfig (mvlpt.config) owns the training options. The schema
  repeats them for users and for Snakemake's validation; these tests hold the copies equal.
* The result layout and record schema: a valid record passes, each kind of bad record or misplaced
  file is refused with one sentence.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from mvlpt import layout, study
from mvlpt.config import TrainConfig
from mvlpt.errors import MvlptError

from fakes import make_record

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="module")
def schema():
    return yaml.safe_load(SCHEMA_PATH.read_text())


# --------------------------------------------------------------------------------------------------
# The config schema against the vocabulary
# --------------------------------------------------------------------------------------------------
def test_schema_methods_are_the_registry(schema):
    pairwise = [m.name for m in study.PAIRWISE_METHODS]
    methods = schema["properties"]["methods"]
    assert methods["items"]["enum"] == pairwise and "softcpt" not in pairwise  # SoftCPT: multitask only
    assert methods["default"] == pairwise
    assert set(schema["properties"]["method_options"]["properties"]) == set(study.METHODS)
    multitask = schema["properties"]["multitask"]["properties"]
    assert multitask["methods"]["items"]["enum"] == list(study.METHODS)
    assert multitask["modes"]["items"]["enum"] == list(study.MULTITASK_MODES)
    assert multitask["strategies"]["items"]["enum"] == list(study.GROUPING_STRATEGIES)


@pytest.mark.parametrize("section, defaults", [("analysis", study.ANALYSIS_DEFAULTS),
                                               ("similarity", study.SIMILARITY_DEFAULTS),
                                               ("multitask", study.MULTITASK_DEFAULTS)])
def test_schema_defaults_are_the_study_defaults(schema, section, defaults):
    sec = schema["properties"][section]
    assert sec["default"] == {} and sec["additionalProperties"] is False
    props = sec["properties"]
    assert set(props) == set(defaults), "every key of the section is a study setting, and vice versa"
    for key, value in defaults.items():
        if value is None:  # "the study's own" (seeds, shots, device): no fixed default
            assert "default" not in props[key], key
        else:
            assert props[key].get("default") == value, key


def test_schema_shrinkage_choices_are_the_study_choices(schema):
    assert schema["properties"]["similarity"]["properties"]["shrinkage"]["enum"] == list(study.SHRINKAGES)


def test_snakemake_fills_the_study_defaults(schema):
    """What the workflow sees for an empty section, after Snakemake's validate, is the study's defaults."""
    from snakemake.utils import validate

    cfg = {"tasks": ["shapes"]}
    validate(cfg, str(SCHEMA_PATH))
    assert cfg["analysis"] == study.ANALYSIS_DEFAULTS
    assert cfg["similarity"] == {k: v for k, v in study.SIMILARITY_DEFAULTS.items() if v is not None}
    assert study.analysis_settings(cfg["analysis"]) == study.ANALYSIS_DEFAULTS


JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def test_schema_train_options_are_trainconfig_fields(schema):
    props = schema["properties"]["train"]["properties"]
    fields = {f.name: type(f.default) for f in dataclasses.fields(TrainConfig)}
    assert set(props) == set(fields)
    for name, kind in fields.items():
        assert props[name]["type"] == JSON_TYPES[kind], name


# --------------------------------------------------------------------------------------------------
# Result records and their place
# --------------------------------------------------------------------------------------------------
def one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.endswith(".") and "Traceback" not in msg


def test_valid_record_passes():
    rec = make_record("vpt", "shapes", "orientation", 2, test=0.75)
    path = layout.RESULT.path("results", "vpt", "shapes", "orientation", 2)
    assert study.check_record(rec, path) is rec
    assert study.record_problem(rec) is None


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"test": math.nan}, "test = nan"),
        ({"test": 87.5}, "not a percentage"),
        ({"val": -0.1}, "val = -0.1"),
        ({"format": 99}, "format 99"),
        ({"shots": 0}, "shots = 0"),
    ],
)
def test_bad_record_is_refused_with_one_sentence(change, needle):
    rec = make_record(**change)
    with pytest.raises(MvlptError) as e:
        study.check_record(rec, "results/coop/a__a/seed1.json")
    msg = str(e.value)
    assert needle in msg and "results/coop/a__a/seed1.json" in msg and one_sentence(msg), msg


def test_record_missing_a_field_is_refused():
    rec = make_record()
    del rec["val"]
    with pytest.raises(MvlptError, match=r"lacks the field\(s\) val") as e:
        study.check_record(rec)
    assert one_sentence(str(e.value))
    with pytest.raises(MvlptError, match="not an mvlpt result"):
        study.check_record(["a", "list"])


def test_misplaced_record_is_refused():
    rec = make_record("coop", "shapes", "orientation", 1)
    wrong = layout.RESULT.path("results", "coop", "orientation", "shapes", 1)  # the other direction
    with pytest.raises(MvlptError, match="misplaced") as e:
        study.check_record(rec, wrong)
    assert one_sentence(str(e.value))
    with pytest.raises(MvlptError, match="misplaced"):
        study.check_record(rec, layout.RESULT.path("results", "coop", "shapes", "orientation", 2))  # other seed

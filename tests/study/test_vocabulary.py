"""The study vocabulary (mvlpt.study.vocabulary) and the places that must agree with it.

* The config schema (mvlpt/study/config.schema.yaml, package data) names the methods, and TrainConfig
  (mvlpt.training.config) owns the training options, whose types the schema repeats; these tests hold the
  copies equal. (The schema is the only home of the other defaults: tests/study/test_settings.py.)
* The result layout and record schema: a valid record passes, each kind of bad record or misplaced
  file is refused with one sentence.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml

from fakes import make_record
from mvlpt.errors import MvlptError
from mvlpt.study import layout, settings, vocabulary
from mvlpt.training.config import TrainConfig

SCHEMA_PATH = settings.schema_path()


@pytest.fixture(scope="module")
def schema():
    return yaml.safe_load(SCHEMA_PATH.read_text())


# --------------------------------------------------------------------------------------------------
# The config schema against the vocabulary
# --------------------------------------------------------------------------------------------------
def test_schema_leaves_method_names_to_the_registry(schema):
    """A new method needs no schema edit: the schema lists no method name (mvlpt.study.configcheck checks them
    against the registry), and its `methods` default (the one home of that default) names pairwise methods."""
    methods = schema["properties"]["methods"]
    assert "enum" not in methods["items"]
    pairwise = [m.name for m in vocabulary.PAIRWISE_METHODS]
    assert methods["default"] and all(m in pairwise for m in methods["default"])  # SoftCPT: multitask only
    assert "properties" not in schema["properties"]["method_options"]
    multitask = schema["properties"]["multitask"]["properties"]
    assert "enum" not in multitask["methods"]["items"]
    assert multitask["modes"]["items"]["enum"] == list(vocabulary.MULTITASK_MODES)
    assert multitask["strategies"]["items"]["enum"] == list(vocabulary.GROUPING_STRATEGIES)


def test_schema_shrinkage_choices_are_the_study_choices(schema):
    assert schema["properties"]["similarity"]["properties"]["shrinkage"]["enum"] == list(vocabulary.SHRINKAGES)


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
    assert vocabulary.check_record(rec, path) is rec
    assert vocabulary.record_problem(rec) is None


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
        vocabulary.check_record(rec, "results/coop/a__a/seed1.json")
    msg = str(e.value)
    assert needle in msg and "results/coop/a__a/seed1.json" in msg and one_sentence(msg), msg


def test_record_missing_a_field_is_refused():
    rec = make_record()
    del rec["val"]
    with pytest.raises(MvlptError, match=r"lacks the field\(s\) val") as e:
        vocabulary.check_record(rec)
    assert one_sentence(str(e.value))
    with pytest.raises(MvlptError, match="not an mvlpt result"):
        vocabulary.check_record(["a", "list"])


def test_misplaced_record_is_refused():
    rec = make_record("coop", "shapes", "orientation", 1)
    wrong = layout.RESULT.path("results", "coop", "orientation", "shapes", 1)  # the other direction
    with pytest.raises(MvlptError, match="misplaced") as e:
        vocabulary.check_record(rec, wrong)
    assert one_sentence(str(e.value))
    with pytest.raises(MvlptError, match="misplaced"):
        vocabulary.check_record(rec, layout.RESULT.path("results", "coop", "shapes", "orientation", 2))  # other seed

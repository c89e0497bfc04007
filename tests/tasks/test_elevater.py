"""The 20 ELEVATER registry entries against ELEVATER's own reference data."""

import json
from pathlib import Path

import pytest

from mvlpt.datasets import catalog
from mvlpt.errors import MvlptError
from mvlpt.tasks import elevater, get_task, list_tasks

REF = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "elevater"


def test_twenty_tasks_named_as_in_elevater():
    names = list_tasks(source="elevater")
    assert len(names) == 20
    assert sorted(names) == sorted(catalog.tasks_info())
    assert sorted(names) == sorted(catalog.manifest())
    for n in names:
        assert "__" not in n


def test_class_counts_equal_the_manifest():
    for name in list_tasks(source="elevater"):
        task = get_task(name)
        entry = catalog.manifest_entry(name)
        assert task.num_classes == entry["num_classes"], name
        assert task.num_classes == catalog.tasks_info()[name]["num_classes"], name
    assert sum(get_task(n).num_classes for n in list_tasks(source="elevater")) == 1151


@pytest.mark.skipif(not REF.is_dir(), reason="reference data not present")
def test_package_data_is_elevaters_reference_data():
    assert json.loads((REF / "tasks.json").read_text()) == catalog.tasks_info()
    assert {d["name"]: d for d in json.loads((REF / "vision_datasets.json").read_text())} == catalog.manifest()


def test_class_order_templates_splits_and_kinds():
    info = catalog.tasks_info()
    for name in list_tasks(source="elevater"):
        task = get_task(name)
        assert list(task.classnames) == info[name]["classnames"]  # ELEVATER's label order
        assert list(task.templates) == info[name]["templates"]
        entry = catalog.manifest_entry(name)
        assert task.splits == (("train", "val", "test") if "val" in entry else ("train", "test"))
        assert task.multilabel == (name == "voc-2007-classification")
        assert task.source == "elevater"
    assert get_task("cifar-100").classnames[:3] == ("chimpanzee", "trout", "skunk")  # not alphabetical


def test_metrics():
    mpc = {"caltech-101", "fgvc-aircraft-2013b-variants102", "oxford-flower-102", "oxford-iiit-pets"}
    for name in list_tasks(source="elevater"):
        m = get_task(name).metric
        if name in mpc:
            assert m == "mean_per_class_accuracy"
        elif name == "voc-2007-classification":
            assert m == "map_11point"
        elif name == "hateful-memes":
            assert m == "roc_auc"
        else:
            assert m == "accuracy", name


def test_hateful_memes_metric_is_selectable():
    """Chosen per call (the jobs' --hateful-memes-metric), never by changing the registry."""
    task = get_task("hateful-memes")
    assert elevater.scored_task(task, "accuracy").metric == "accuracy"
    assert elevater.scored_task(task, None) is task and elevater.scored_task(task, "roc_auc").metric == "roc_auc"
    assert get_task("hateful-memes").metric == "roc_auc"  # the registry is unchanged
    other = get_task("cifar-10")
    assert elevater.scored_task(other, "accuracy") is other
    with pytest.raises(MvlptError, match="hateful_memes_metric"):
        elevater.scored_task(task, "f1")


def test_every_task_has_a_route_and_hateful_memes_is_by_hand():
    table = catalog.routes_table()["tasks"]
    assert set(table) == set(catalog.tasks_info())
    auto = [t for t, s in table.items() if s["routes"]]
    assert len(auto) == 19 and "hateful-memes" not in auto
    assert "manual" in table["hateful-memes"]
    for t, s in table.items():
        for r in s["routes"]:
            assert r in ("hub", "torchvision")
            assert s[r]["split_note"] and s[r]["disk_gb"] > 0, (t, r)
        if "hub" in s:
            assert s["hub"]["repo"].startswith("clip-benchmark/wds_")
        if "torchvision" in s:
            assert set(s["torchvision"]["splits"]) <= set(get_task(t).splits)


def test_unknown_task_names_known_ones():
    with pytest.raises(MvlptError, match="not an ELEVATER task"):
        catalog.check_task("cifar10")

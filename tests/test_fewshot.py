import numpy as np
import pytest

from mvlpt.errors import MvlptError
from mvlpt.tasks import get_task, list_tasks
from mvlpt.tasks.fewshot import indices_of, make_split, read_split, write_split

TASK = "shapes"


def _per_class(task, ids):
    data = task.load("train")
    labels = data.labels[indices_of(data, ids)]
    return np.bincount(labels, minlength=task.num_classes)


def test_same_seed_same_split_different_seed_different(tmp_path):
    task = get_task(TASK)
    a, b, c = make_split(task, 1, 5), make_split(task, 1, 5), make_split(task, 2, 5)
    assert a == b
    assert a["train"] != c["train"]
    write_split(a, tmp_path / "s.json")
    assert read_split(tmp_path / "s.json", TASK) == a
    assert (tmp_path / "s.json").read_bytes() == (write_split(b, tmp_path / "t.json") or (tmp_path / "t.json").read_bytes())


@pytest.mark.parametrize("shots,n_train,n_val", [(5, 4, 1), (20, 16, 4), (2, 1, 1)])
def test_k_per_class_and_class_balanced_80_20(shots, n_train, n_val):
    task = get_task(TASK)
    split = make_split(task, 3, shots)
    assert set(_per_class(task, split["train"])) == {n_train}
    assert set(_per_class(task, split["val"])) == {n_val}
    assert not set(split["train"]) & set(split["val"])


def test_one_shot_has_a_separate_validation_image():
    task = get_task(TASK)
    split = make_split(task, 1, 1)
    assert set(_per_class(task, split["train"])) == {1} and set(_per_class(task, split["val"])) == {1}
    assert not set(split["train"]) & set(split["val"])


def test_too_many_shots_is_a_clear_error():
    with pytest.raises(MvlptError, match="fewer than shots=100000"):
        make_split(get_task(TASK), 1, 100000)
    with pytest.raises(MvlptError, match="at least 1"):
        make_split(get_task(TASK), 1, 0)


def test_multilabel_split_covers_every_class():
    multi = [n for n in list_tasks("synthetic") if get_task(n).multilabel]
    assert multi, "the offline suite should have a multi-label task"
    task = get_task(multi[0])
    split = make_split(task, 1, 5)
    data = task.load("train")
    labels = data.labels[indices_of(data, split["train"] + split["val"])]
    assert (labels.sum(0) >= 5).all()


def test_stale_split_file_is_rejected(tmp_path):
    (tmp_path / "bad.json").write_text('{"hello": 1}')
    with pytest.raises(MvlptError, match="not an mvlpt split"):
        read_split(tmp_path / "bad.json")
    data = get_task(TASK).load("train")
    with pytest.raises(MvlptError, match="not in the task's data"):
        indices_of(data, ["train/does-not-exist"])

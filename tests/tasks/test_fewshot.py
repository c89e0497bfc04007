import numpy as np
import pytest

from mvlpt.errors import MvlptError
from mvlpt.tasks import ArraySplit, Task, get_task, list_tasks
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


def test_too_many_shots_is_a_clear_error_under_the_strict_policy():
    with pytest.raises(MvlptError, match="fewer than shots=100000.*policy 'available'"):
        make_split(get_task(TASK), 1, 100000, policy="strict")
    with pytest.raises(MvlptError, match="at least 1"):
        make_split(get_task(TASK), 1, 0)
    with pytest.raises(MvlptError, match="policy must be one of available, strict"):
        make_split(get_task(TASK), 1, 5, policy="lenient")


# ------------------------------------------------------------- classes with fewer images than shots
def _task_with(per_class: list[int], name="few-images") -> tuple[Task, ArraySplit]:
    """A task whose class c has per_class[c] training images (ids say their class)."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)]).astype(np.int64)
    ids = [f"c{c}/{i}" for c, n in enumerate(per_class) for i in range(n)]
    split = ArraySplit(ids, labels, np.zeros((len(ids), 2, 2, 3), dtype=np.uint8))
    task = Task(
        name,
        tuple(f"class {c}" for c in range(len(per_class))),
        ("a photo of a {}.",),
        "accuracy",
        loader=lambda s, d=None: split,
    )
    return task, split


def _count(ids) -> dict[int, int]:
    out: dict[int, int] = {}
    for i in ids:
        c = int(i.split("/")[0][1:])
        out[c] = out.get(c, 0) + 1
    return out


def test_a_class_short_of_k_gives_all_its_images_as_elevater_does():
    # oxford-flower-102's case: 10 training images per class, the paper's study asks 20 shots
    task, data = _task_with([10] * 4)
    split = make_split(task, 1, 20, split_data=data)
    assert _count(split["train"]) == {c: 8 for c in range(4)}  # every image, split 80/20 by the class's own count
    assert _count(split["val"]) == {c: 2 for c in range(4)}
    assert split["shots_taken"] == {"min": 10, "max": 10, "short": {f"class {c}": 10 for c in range(4)}}
    with pytest.raises(
        MvlptError,
        match="'few-images' has only 10 training images of class 'class 0' "
        r"\(4 classes short in all\), fewer than shots=20",
    ):
        make_split(task, 1, 20, split_data=data, policy="strict")


def test_only_the_short_classes_change_and_full_splits_carry_no_new_field(tmp_path):
    task, data = _task_with([30, 3, 1, 25])
    split = make_split(task, 2, 20, split_data=data)
    assert _count(split["train"]) == {0: 16, 1: 2, 2: 1, 3: 16}
    assert _count(split["val"]) == {0: 4, 1: 1, 3: 4}  # a single image trains; no val of its own
    assert split["shots_taken"] == {"min": 1, "max": 20, "short": {"class 1": 3, "class 2": 1}}
    write_split(split, tmp_path / "s.json")
    assert read_split(tmp_path / "s.json")["shots_taken"] == split["shots_taken"]
    full = make_split(get_task(TASK), 1, 5)
    assert "shots_taken" not in full  # a task with enough images: the split file is what it always was


def test_one_shot_class_with_a_single_image():
    task, data = _task_with([4, 1])
    split = make_split(task, 1, 1, split_data=data)
    assert _count(split["train"]) == {0: 1, 1: 1} and _count(split["val"]) == {0: 1}
    assert split["shots_taken"]["short"] == {"class 1": 1}
    with pytest.raises(MvlptError, match="single training image"):
        make_split(task, 1, 1, split_data=data, policy="strict")


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

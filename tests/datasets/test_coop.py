"""The CoOp data sets of the paper's Table 1 that are not ELEVATER tasks (imagenet, sun397, ucf101): their
registration, ImageNet's names from open_clip, the names read from the data, the routes' checksums, fetching
by hand. The data are tiny fake folders in the layouts the readers expect; nothing touches the network."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from fakes import colour, encode
from mvlpt.cli import main
from mvlpt.datasets import coop, lock, routes
from mvlpt.errors import MvlptError
from mvlpt.tasks import coop as coop_tasks, get_task, list_tasks

SUN_CLASSES = ["/a/abbey", "/a/apartment_building/outdoor"] + [f"/z/zone_{i:03d}" for i in range(395)]


@pytest.fixture(autouse=True)
def _names_forget_the_folder():
    """A data-named task reads its names where its last load looked: no test leaves its folder behind."""
    yield
    for name in ("sun397", "ucf101"):
        get_task(name).classnames.data_dir = None


def one_sentence(msg: str) -> bool:
    return msg.endswith(".") and "\n" not in msg and msg.count(". ") == 0


def write_image(path: Path, c: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(c, fmt="JPEG"))


def make_sun397(data: Path) -> Path:
    """torchvision's SUN397 layout: ClassName.txt and SUN397/<letter>/<class>/sun_*.jpg, 4 images in 2 classes."""
    root = data / "sun397" / "torchvision" / "SUN397"
    root.mkdir(parents=True)
    (root / "ClassName.txt").write_text("\n".join(SUN_CLASSES) + "\n")
    for c, cls in enumerate(SUN_CLASSES[:2]):
        for i in range(4):
            write_image(root / cls[1:] / f"sun_{c}{i}.jpg", c)
    return root


def make_ucf101(data: Path) -> Path:
    """CoOp's UCF-101-midframes: one folder per class, a frame per video (groups g01 and g09)."""
    root = data / "ucf101" / "manual" / "UCF-101-midframes"
    for c in range(101):
        (root / f"Class_{c:03d}").mkdir(parents=True)
    for c in range(2):
        for g in ("g01", "g09"):
            write_image(root / f"Class_{c:03d}" / f"v_Class{c:03d}_{g}_c01.jpg", c)
    return root


def test_the_three_are_registered_with_their_class_counts():
    assert set(list_tasks("coop")) == {"imagenet", "sun397", "ucf101"}
    counts = {n: get_task(n).num_classes for n in ("imagenet", "sun397", "ucf101")}
    assert counts == {"imagenet": 1000, "sun397": 397, "ucf101": 101}
    assert all(get_task(n).splits == ("train", "test") and get_task(n).metric == "accuracy" for n in counts)


def test_imagenet_names_and_templates_are_open_clips():
    from open_clip import zero_shot_metadata as meta

    task = get_task("imagenet")
    theirs = list(meta.IMAGENET_CLASSNAMES)
    differ = [i for i, (a, b) in enumerate(zip(task.classnames, theirs, strict=True)) if a != b]
    assert differ == sorted(coop_tasks.IMAGENET_RENAMED)  # only the names open_clip repeats are told apart
    assert len(set(task.classnames)) == 1000 and task.classnames[0] == theirs[0] == "tench"
    assert task.templates == tuple(t("{}") for t in meta.OPENAI_IMAGENET_TEMPLATES) and len(task.templates) == 80
    assert "a photo of a {}." in task.templates  # CoOp's template for ImageNet
    assert (len(meta.IMAGENET_CLASSNAMES), len(meta.OPENAI_IMAGENET_TEMPLATES)) == coop_tasks.IMAGENET_COUNTS


def test_registering_the_tasks_does_not_import_open_clip():
    """open_clip (and torch) cost seconds to import: every workflow start lists the tasks, so ImageNet's
    names are read from open_clip only when used."""
    import subprocess
    import sys

    code = "import sys; from mvlpt.tasks import list_tasks; list_tasks(); print('open_clip' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["sun397", "ucf101"])
def test_names_from_data_without_data_fail_in_one_sentence_naming_the_fetch(tmp_path, name):
    task = get_task(name)
    with pytest.raises(MvlptError) as e:
        task.load("train", tmp_path)
    assert one_sentence(str(e.value)) and f"run `mvlpt data fetch {name}`" in str(e.value)
    with pytest.raises(MvlptError) as e:
        list(task.classnames)
    msg = str(e.value)
    assert one_sentence(msg) and msg.startswith(f"task {name}: its class names are read from its data")
    assert msg.endswith(f"run `mvlpt data fetch {name}`.") and str(tmp_path) in msg
    assert len(task.classnames) == task.num_classes  # the count needs no data


def test_sun397_names_and_images_from_a_folder(tmp_path):
    make_sun397(tmp_path)
    task = get_task("sun397")
    train, test = task.load("train", tmp_path), task.load("test", tmp_path)
    assert task.classnames[:2] == ("abbey", "outdoor apartment building")  # CoOp's reading of ClassName.txt
    assert len(task.classnames) == 397 and len(set(task.classnames)) == 397
    ids = sorted(train.ids + test.ids)
    assert len(ids) == 8 and not set(train.ids) & set(test.ids) and len(train) > 0 and len(test) > 0
    for split in (train, test):
        for i, rel in enumerate(split.ids):
            c = int(split.labels[i])
            assert rel.startswith(SUN_CLASSES[c][1:] + "/")
            assert np.asarray(split.image(i)).mean(axis=(0, 1)) == pytest.approx(colour(c), abs=12)


def test_coops_split_file_is_used_when_present(tmp_path):
    root = make_sun397(tmp_path)
    records = {
        "train": [["a/abbey/sun_00.jpg", 0, "abbey"]],
        "val": [["a/apartment_building/outdoor/sun_10.jpg", 1, "outdoor apartment building"]],
        "test": [["a/abbey/sun_01.jpg", 0, "abbey"], ["a/apartment_building/outdoor/sun_11.jpg", 5, "x"]],
    }
    (root / "split_zhou_SUN397.json").write_text(json.dumps(records))
    task = get_task("sun397")
    train, test = task.load("train", tmp_path), task.load("test", tmp_path)
    assert train.ids == ["a/abbey/sun_00.jpg", "a/apartment_building/outdoor/sun_10.jpg"]  # train + val
    assert list(train.labels) == [0, 1] and list(test.labels) == [0, 1]  # labels from the folder, not the file


def test_ucf101_names_and_split_from_the_midframes(tmp_path):
    make_ucf101(tmp_path)
    task = get_task("ucf101")
    train, test = task.load("train", tmp_path), task.load("test", tmp_path)
    assert task.classnames[:2] == ("Class 000", "Class 001") and len(task.classnames) == 101
    assert all("_g09_" in i for i in train.ids) and all("_g01_" in i for i in test.ids)  # UCF-101's split 1
    assert list(test.labels) == [0, 1] and test.image(1).size == (12, 12)


def test_a_folder_with_the_wrong_number_of_classes_is_refused(tmp_path):
    root = make_ucf101(tmp_path)
    (root / "Class_000").rename(root.parent / "elsewhere")
    task = get_task("ucf101")
    with pytest.raises(MvlptError, match=r"names 100 classes, not 101"):
        task.load("train", tmp_path)
    with pytest.raises(MvlptError, match=r"names 100 classes, not 101"):
        list(task.classnames)  # read where the last load looked


def test_routes_carry_torchvisions_checksums():
    from torchvision.datasets import SUN397, imagenet

    assert coop.route_spec("imagenet")["files"] == dict(imagenet.ARCHIVE_META.values())
    sun = coop.route_spec("sun397")
    assert (sun["class"], sun["url"], sun["md5"]) == ("SUN397", SUN397._DATASET_URL, SUN397._DATASET_MD5)
    ucf = coop.route_spec("ucf101")  # CoOp's mid-frames: no checksum is published, none is made up
    assert "md5" not in ucf and "files" not in ucf and ucf["checksum"].startswith("none published")
    rows = {r["task"]: r for r in routes.route_rows()}
    assert [rows[t]["default"] for t in ("imagenet", "sun397", "ucf101")] == ["manual", "torchvision", "manual"]


def test_imagenet_by_hand_checks_the_md5s(tmp_path, capsys):
    folder = tmp_path / "imagenet" / "manual"
    assert main(["data", "fetch", "imagenet", "--data-dir", str(tmp_path)]) == 2  # a user error
    err = capsys.readouterr().err
    assert "licence must be accepted first" in err and str(folder) in err and "ILSVRC2012_devkit_t12.tar.gz" in err
    folder.mkdir(parents=True)
    for name in coop.route_spec("imagenet")["files"]:
        (folder / name).write_bytes(b"not the archive")
    with pytest.raises(MvlptError, match=r"does not have torchvision's MD5 [0-9a-f]{32}"):
        routes.fetch("imagenet", tmp_path)
    with pytest.raises(MvlptError, match="has one route, manual"):
        routes.fetch("imagenet", tmp_path, route="hub")


def test_ucf101_by_hand_is_recorded_in_the_lock_file(tmp_path, capsys):
    root = make_ucf101(tmp_path)
    assert main(["data", "fetch", "ucf101", "--data-dir", str(tmp_path)]) == 0
    entry = lock.read_lock(tmp_path)["tasks"]["ucf101"]
    assert entry["route"] == "manual" and len(entry["files"]) == 4
    rel = "UCF-101-midframes/Class_000/v_Class000_g01_c01.jpg"
    assert entry["files"][rel]["sha256"] == hashlib.sha256((root.parent / rel).read_bytes()).hexdigest()
    assert main(["data", "check", "ucf101", "--data-dir", str(tmp_path)]) == 0
    assert routes.present_routes("ucf101", tmp_path) == [("manual", root.parent)]

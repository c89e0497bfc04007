"""ELEVATER data routes on data the tests make: ELEVATER's layout, the hub mirror's, torchvision's,
the hand-fetched one; the lock file; offline failures; few-shot files; corrupt images.

Nothing here touches the network: the hub is stood in for by a local folder.
"""

import io
import json
import socket
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes import colour, encode, make_iris_task, truncated_png
from mvlpt.cli import main
from mvlpt.datasets import lock, routes
from mvlpt.datasets.images import CorruptImageError, check_split
from mvlpt.errors import MvlptError
from mvlpt.tasks import elevater, get_task
from mvlpt.tasks.fewshot import make_split, read_split, write_split


# ------------------------------------------------------------------------------------------ helpers
def class_of(img: Image.Image, n: int) -> int:
    px = np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(0)
    return int(np.argmin([np.abs(px - np.array(colour(c))).sum() for c in range(n)]))


def make_wds_folder(folder: Path, classnames: list[str], splits: dict, *, multilabel=False, corrupt=frozenset()) -> Path:
    """A folder in CLIP_benchmark's webdataset layout. ``splits[split]`` = list of (image_class, mirror_label)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classnames.txt").write_text("\n".join(classnames) + "\n")
    (folder / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\n")
    if multilabel:
        (folder / "dataset_type.txt").write_text("multilabel\n")
    fmts = [("webp", "WEBP"), ("png", "PNG"), ("jpg", "JPEG")]
    for split, samples in splits.items():
        (folder / split).mkdir(exist_ok=True)
        (folder / split / "nshards.txt").write_text("1\n")
        with tarfile.open(folder / split / "0.tar", "w") as tf:
            for i, (img_cls, label) in enumerate(samples):
                ext, fmt = fmts[i % 3]
                data = truncated_png() if (split, i) in corrupt else encode(img_cls, fmt)
                if (split, i) in corrupt:
                    ext = "png"
                members = {ext: data}
                if multilabel:
                    buf = io.BytesIO()
                    np.save(buf, np.asarray(label, dtype=np.float32))
                    members["npy"] = buf.getvalue()
                else:
                    members["cls"] = str(label).encode()
                for e, payload in members.items():
                    info = tarfile.TarInfo(f"s{i:07d}.{e}")
                    info.size = len(payload)
                    tf.addfile(info, io.BytesIO(payload))
    return folder


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    elevater.clear_cache()
    monkeypatch.setattr(routes, "_unreachable", {})
    monkeypatch.delenv("MVLPT_DATA_DIR", raising=False)
    yield
    elevater.clear_cache()


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """Stand in for the Hugging Face hub: repos are folders under ``hub/``; no network."""
    hub = tmp_path / "hub"
    calls = []

    def download(repo_id, revision, local_dir, allow_patterns):
        calls.append(repo_id)
        src = hub / repo_id
        if not src.is_dir():
            raise RuntimeError(f"404 {repo_id}")
        routes._copy_tree(src, Path(local_dir), allow_patterns)
        files = [p.relative_to(local_dir).as_posix() for p in Path(local_dir).rglob("*") if p.is_file()]
        return "0" * 40, {f: f"https://example.invalid/{repo_id}/{f}" for f in files}

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(routes, "_hub_download", download)
    monkeypatch.setattr(routes, "_connect", lambda host, port, timeout: None)  # "reachable"
    return hub, calls


CIFAR = list(get_task("cifar-10").classnames)


def cifar_mirror(folder: Path, per_class=4, test_per_class=2, corrupt=frozenset()) -> list[str]:
    """cifar-10 as a mirror that orders (and spells) the classes its own way."""
    mirror_names = [CIFAR[i] for i in [9, 3, 0, 7, 1, 8, 2, 5, 4, 6]]
    mirror_names[0] = "Truck"  # case differs
    mirror_names[4] = "auto_mobile".replace("_", "")  # "automobile"
    pos = {n.lower(): i for i, n in enumerate(mirror_names)}
    train = [(c, pos[CIFAR[c]]) for _ in range(per_class) for c in range(10)]
    test = [(c, pos[CIFAR[c]]) for _ in range(test_per_class) for c in range(10)]
    make_wds_folder(folder, mirror_names, {"train": train, "test": test}, corrupt=corrupt)
    return mirror_names


# ------------------------------------------------------------------------------- ELEVATER's layout
def test_elevater_layout_loads_lazily_with_labels(tmp_path):
    per = {"train": [0, 1, 1, 0, 1], "val": [1, 0], "test": [0, 1, 1]}
    make_iris_task(tmp_path, "rendered-sst2", per)
    task = get_task("rendered-sst2")
    for split, labels in per.items():
        s = task.load(split, str(tmp_path))
        assert len(s) == len(labels) and list(s.labels) == labels and s.labels.dtype == np.int64
        assert (
            len(set(s.ids)) == len(s)
            and s.ids[0] == f"{'train' if split == 'train' else 'valid' if split == 'val' else 'test'}.zip@{split}/0.png"
        )
        for i in range(len(s)):
            img = s.image(i)
            assert img.mode == "RGB" and class_of(img, 2) == labels[i]


def test_labelmap_in_another_order_is_mapped_by_name(tmp_path, caplog):
    # labels.txt says id 0 = positive, 1 = negative: ELEVATER's order is negative, positive.
    per = {"train": [0, 0, 1], "val": [1], "test": [0, 1]}
    make_iris_task(tmp_path, "rendered-sst2", per, labelmap=["positive", "negative"])
    s = get_task("rendered-sst2").load("train", tmp_path)
    assert list(s.labels) == [1, 1, 0]


def test_multilabel_voc_layout(tmp_path):
    per = {"train": [[0, 14], [6], [14]], "val": [[11, 12, 19]], "test": [[1], [2, 3]]}
    make_iris_task(tmp_path, "voc-2007-classification", per)
    task = get_task("voc-2007-classification")
    tr = task.load("train", tmp_path)
    assert tr.labels.shape == (3, 20) and tr.labels.dtype == np.uint8
    assert list(np.flatnonzero(tr.labels[0])) == [0, 14]
    va = task.load("val", tmp_path)  # val images live in train.zip, as in ELEVATER's manifest
    assert list(np.flatnonzero(va.labels[0])) == [11, 12, 19] and va.image(0).mode == "RGB"


def test_coco_layout_kitti(tmp_path):
    entry = elevater.catalog.manifest_entry("kitti-distance")
    root = tmp_path / entry["root_folder"]
    root.mkdir(parents=True)
    names = list(get_task("kitti-distance").classnames)
    for split, labels in {"train": [0, 3, 2, 1], "val": [1], "test": [2, 0]}.items():
        idx, zname = entry[split]["index_path"], entry[split]["files_for_local_usage"][0]
        with zipfile.ZipFile(root / zname, "w") as zf:
            for i, lab in enumerate(labels):
                zf.writestr(f"{i}.png", encode(lab))
        coco = {
            "images": [{"id": i + 1, "file_name": f"{zname}@{i}.png"} for i in range(len(labels))],
            "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": lab + 1} for i, lab in enumerate(labels)],
            "categories": [{"id": c + 1, "name": n} for c, n in enumerate(names)],
        }
        (root / idx).write_text(json.dumps(coco))
    s = get_task("kitti-distance").load("train", tmp_path)
    assert list(s.labels) == [0, 3, 2, 1]
    assert [class_of(s.image(i), 4) for i in range(4)] == [0, 3, 2, 1]


def test_missing_data_says_where_it_looked_and_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MVLPT_DATA_DIR", str(tmp_path / "nothing"))
    with pytest.raises(MvlptError) as e:
        get_task("dtd").load("train")  # data_dir None -> $MVLPT_DATA_DIR
    msg = str(e.value)
    assert msg.startswith(f"task dtd: no data found under {tmp_path / 'nothing'} (looked for ")
    assert "classification/dtd_20211007" in msg and "dtd/hub" in msg
    assert msg.endswith("run `mvlpt data fetch dtd` or see README 'Getting the data'.")


def test_corrupt_image_in_zip_is_reported_with_its_path(tmp_path):
    make_iris_task(tmp_path, "rendered-sst2", {"train": [0, 1, 0, 1], "val": [0], "test": [1]}, corrupt={("train", 2)})
    s = get_task("rendered-sst2").load("train", tmp_path)
    with pytest.raises(CorruptImageError) as e:
        s.image(2)
    assert "task rendered-sst2: corrupt image" in str(e.value) and "train.zip@train/2.png" in str(e.value)
    kept, report = check_split(s, on_corrupt="skip", task="rendered-sst2")
    assert len(kept) == 3 and "train.zip@train/2.png" in report.skipped[0][2]
    assert list(kept.labels) == [0, 1, 1]  # the other labels are untouched
    with pytest.raises(CorruptImageError, match="train.zip@train/2.png"):
        check_split(s, on_corrupt="fail")
    # the CLI lists it too
    assert main(["data", "check", "rendered-sst2", "--data-dir", str(tmp_path), "--images"]) == 1


# ------------------------------------------------------------------------------------- hub mirror
def test_hub_fetch_maps_labels_by_name_and_records_the_lock(tmp_path, fake_hub, capsys):
    hub, calls = fake_hub
    cifar_mirror(hub / "clip-benchmark" / "wds_vtab-cifar10")
    data = tmp_path / "data"
    assert main(["data", "fetch", "cifar-10", "--data-dir", str(data)]) == 0
    assert calls == ["clip-benchmark/wds_vtab-cifar10"]
    out = capsys.readouterr().out
    assert "cifar-10: fetched by route hub" in out and "45,000" in out  # says where the split differs
    lk = json.loads((data / "mvlpt-data.lock.json").read_text())
    ent = lk["tasks"]["cifar-10"]
    assert ent["route"] == "hub" and ent["dir"] == "cifar-10/hub" and ent["revision"] == "0" * 40
    assert set(ent["files"]) >= {"classnames.txt", "train/0.tar", "test/0.tar", "train/nshards.txt"}
    tar = data / "cifar-10" / "hub" / "train" / "0.tar"
    assert ent["files"]["train/0.tar"]["sha256"] == lock.sha256_file(tar)
    assert ent["files"]["train/0.tar"]["url"].endswith("train/0.tar")

    task = get_task("cifar-10")
    tr = task.load("train", data)
    assert len(tr) == 40 and len(set(tr.ids)) == 40
    truth = [class_of(tr.image(i), 10) for i in range(len(tr))]
    assert list(tr.labels) == truth  # the mirror's own order was undone by name
    assert sorted(set(truth)) == list(range(10))
    te = task.load("test", data)
    assert list(te.labels) == [class_of(te.image(i), 10) for i in range(len(te))]
    assert any(p.name.endswith(".mvlpt-index.json") for p in (data / "cifar-10" / "hub" / "train").iterdir())

    # check: present; after a byte flips: corrupt, naming file, expected and actual sha256
    assert main(["data", "check", "cifar-10", "--data-dir", str(data)]) == 0
    assert "cifar-10: present (route hub" in capsys.readouterr().out

    # fetching again needs no network once the files are there and match the lock
    def no_net(host, port, timeout):
        raise OSError("offline")

    routes._unreachable.clear()
    import mvlpt.datasets.routes as r_mod

    r_mod._connect, saved = no_net, r_mod._connect
    try:
        assert main(["data", "fetch", "cifar-10", "--data-dir", str(data)]) == 0
    finally:
        r_mod._connect = saved
    assert "cifar-10: already fetched by route hub" in capsys.readouterr().out and calls == ["clip-benchmark/wds_vtab-cifar10"]
    expected = ent["files"]["train/0.tar"]["sha256"]
    raw = bytearray(tar.read_bytes())
    raw[700] ^= 0xFF
    tar.write_bytes(bytes(raw))
    actual = lock.sha256_file(tar)
    assert main(["data", "check", "cifar-10", "--data-dir", str(data)]) == 1
    out = capsys.readouterr().out
    assert "cifar-10: corrupt" in out
    assert f"checksum mismatch for {tar}: expected sha256 {expected}, got {actual}" in out
    v = lock.verify(data, "cifar-10")
    assert v.status == "corrupt"
    tar.unlink()
    assert lock.verify(data, "cifar-10").status == "missing"


def test_hub_source_folder_and_fewshot_files(tmp_path, fake_hub):
    hub, calls = fake_hub
    src = tmp_path / "copy-of-wds_vtab-cifar10"
    cifar_mirror(src, per_class=6)
    data = tmp_path / "data"
    entry = routes.fetch("cifar-10", data, route="hub", source=str(src))
    assert calls == [] and entry["source"] == str(src)
    task = get_task("cifar-10")
    files = {}
    for seed, tag in [(1, "a"), (1, "b"), (2, "c")]:
        split = make_split(task, seed, 5, data_dir=str(data))
        write_split(split, tmp_path / f"{tag}.json")
        files[tag] = (tmp_path / f"{tag}.json").read_bytes()
    assert files["a"] == files["b"]  # one seed: identical files
    assert files["a"] != files["c"]  # another seed: another sample
    a, c = read_split(tmp_path / "a.json"), read_split(tmp_path / "c.json")
    assert len(a["train"]) == 40 and len(a["val"]) == 10 and a["train"] != c["train"]
    tr = task.load("train", data)
    pos = {sid: i for i, sid in enumerate(tr.ids)}
    counts = np.bincount([tr.labels[pos[i]] for i in a["train"]], minlength=10)
    assert list(counts) == [4] * 10  # 5 shots -> 4 train + 1 val per class


def test_mirror_class_without_an_elevater_name_fails(tmp_path, fake_hub):
    hub, _ = fake_hub
    names = CIFAR[:9] + ["spaceship"]
    make_wds_folder(
        hub / "clip-benchmark" / "wds_vtab-cifar10",
        names,
        {"train": [(i, i) for i in range(10)], "test": [(i, i) for i in range(10)]},
    )
    data = tmp_path / "data"
    routes.fetch("cifar-10", data)
    with pytest.raises(MvlptError, match=r"match no ELEVATER class \('spaceship'\).*aliases"):
        get_task("cifar-10").load("train", data)


def test_hub_multilabel_voc_and_missing_val(tmp_path, fake_hub):
    hub, _ = fake_hub
    voc = list(get_task("voc-2007-classification").classnames)
    mirror = list(reversed(voc))

    def hot(*cls):
        v = np.zeros(20)
        v[[mirror.index(voc[c]) for c in cls]] = 1
        return v

    make_wds_folder(
        hub / "clip-benchmark" / "wds_voc2007_multilabel",
        mirror,
        {"train": [(0, hot(0, 14)), (5, hot(5))], "test": [(19, hot(19, 3))]},
        multilabel=True,
    )
    data = tmp_path / "data"
    routes.fetch("voc-2007-classification", data)
    task = get_task("voc-2007-classification")
    tr = task.load("train", data)
    assert tr.labels.shape == (2, 20)
    assert list(np.flatnonzero(tr.labels[0])) == [0, 14] and list(np.flatnonzero(tr.labels[1])) == [5]
    with pytest.raises(MvlptError, match="hub mirror has no 'val' split"):
        task.load("val", data)


def test_corrupt_image_in_a_shard(tmp_path, fake_hub):
    hub, _ = fake_hub
    cifar_mirror(hub / "clip-benchmark" / "wds_vtab-cifar10", per_class=1, corrupt={("train", 4)})
    data = tmp_path / "data"
    routes.fetch("cifar-10", data)
    s = get_task("cifar-10").load("train", data)
    with pytest.raises(CorruptImageError, match=r"task cifar-10: corrupt image .*train/0\.tar@s0000004\.png"):
        s.image(4)
    kept, report = check_split(s, on_corrupt="skip")
    assert len(kept) == 9 and "s0000004" not in " ".join(kept.ids) and report


# ------------------------------------------------------------------------------------------ offline
def test_offline_fetch_fails_fast_with_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_dns(host, port, timeout):
        raise socket.gaierror(-2, "Name or service not known")

    def never(*a, **k):
        raise AssertionError("must not try to download")

    monkeypatch.setattr(routes, "_connect", no_dns)
    monkeypatch.setattr(routes, "_hub_download", never)
    t0 = time.monotonic()
    rc = main(["data", "fetch", "food-101", "mnist", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and time.monotonic() - t0 < 5
    first = err.splitlines()[0]
    assert first.startswith("mvlpt: error: task food-101: route hub cannot reach huggingface.co (Name or service not known); ")
    assert first.endswith("`mvlpt data fetch food-101 --route hub --source DIR`.") and first.count(". ") == 0
    assert "task mnist: route hub cannot reach" in err

    with pytest.raises(MvlptError, match=r"^task dtd: route torchvision cannot reach www\.robots\.ox\.ac\.uk"):
        routes.fetch("dtd", tmp_path, route="torchvision")


def test_offline_against_a_closed_port_and_offline_flag(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    monkeypatch.setattr(routes, "_hub_download", lambda *a, **k: pytest.fail("must not download"))
    t0 = time.monotonic()
    with pytest.raises(MvlptError, match=r"^task gtsrb: route hub cannot reach 127\.0\.0\.1 \(") as e:
        routes.fetch("gtsrb", tmp_path)
    assert time.monotonic() - t0 < 6 and "\n" not in str(e.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MvlptError, match="^task gtsrb: route hub is unavailable because HF_HUB_OFFLINE is set"):
        routes.fetch("gtsrb", tmp_path)


def test_hateful_memes_has_no_automatic_route_but_a_precise_message(tmp_path):
    with pytest.raises(MvlptError) as e:
        routes.fetch("hateful-memes", tmp_path)
    msg = str(e.value)
    assert "licence" in msg and "train.jsonl" in msg and "dev_seen.jsonl" in msg and "img/" in msg
    assert str(tmp_path / "hateful-memes" / "manual") in msg
    # once the files are there, fetch records them and the task loads
    m = tmp_path / "hateful-memes" / "manual"
    (m / "img").mkdir(parents=True)
    rows = {"train.jsonl": [0, 1, 1, 0], "dev_seen.jsonl": [1, 0]}
    for fname, labels in rows.items():
        lines = []
        for i, lab in enumerate(labels):
            rel = f"img/{fname[:3]}{i}.png"
            (m / rel).write_bytes(encode(lab))
            lines.append(json.dumps({"id": i, "img": rel, "label": lab, "text": "x"}))
        (m / fname).write_text("\n".join(lines) + "\n")
    entry = routes.fetch("hateful-memes", tmp_path)
    assert entry["route"] == "manual" and "train.jsonl" in entry["files"]
    task = get_task("hateful-memes")
    te = task.load("test", tmp_path)
    assert list(te.labels) == [1, 0] and class_of(te.image(0), 2) == 1


# -------------------------------------------------------------------------------------- torchvision
def test_torchvision_layout_gtsrb_by_class_id(tmp_path):
    root = tmp_path / "gtsrb" / "torchvision" / "gtsrb"
    for cls in (3, 40):
        d = root / "GTSRB" / "Training" / f"{cls:05d}"
        d.mkdir(parents=True)
        for k in range(2):
            (d / f"{k}.ppm").write_bytes(encode(cls, "PPM"))
    test_dir = root / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    (test_dir / "00000.ppm").write_bytes(encode(7, "PPM"))
    (root / "GT-final_test.csv").write_text(
        "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n00000.ppm;12;12;0;0;11;11;7\n"
    )
    task = get_task("gtsrb")
    tr = task.load("train", tmp_path)
    assert sorted(tr.labels.tolist()) == [3, 3, 40, 40]  # folder numbers, not the 2 folders' positions
    assert all(class_of(tr.image(i), 43) == tr.labels[i] for i in range(len(tr)))
    te = task.load("test", tmp_path)
    assert list(te.labels) == [7] and te.image(0).mode == "RGB"


def test_local_route_records_elevater_files(tmp_path, capsys):
    src = tmp_path / "elevater-copy"
    make_iris_task(src, "rendered-sst2", {"train": [0, 1], "val": [1], "test": [0]})
    data = tmp_path / "data"
    assert main(["data", "fetch", "rendered-sst2", "--route", "local", "--source", str(src), "--data-dir", str(data)]) == 0
    ent = lock.read_lock(data)["tasks"]["rendered-sst2"]
    assert ent["route"] == "local" and ent["dir"] == "classification/rendered_sst2_20210924"
    assert set(ent["files"]) == {"train.txt", "valid.txt", "test.txt", "train.zip", "valid.zip", "test.zip", "labels.txt"}
    assert list(get_task("rendered-sst2").load("val", data).labels) == [1]
    capsys.readouterr()
    assert main(["data", "check", "--data-dir", str(data), "rendered-sst2", "mnist"]) == 1
    out = capsys.readouterr().out
    assert "rendered-sst2: present (route local" in out and "mnist: missing" in out


def test_routes_markdown_lists_every_task():
    from mvlpt.commands.data import routes_markdown
    from mvlpt.datasets import catalog

    md = routes_markdown(catalog.task_names())
    assert md.count("\n") == 21 and "clip-benchmark/wds_vtab-resisc45" in md and "| hateful-memes | manual |" in md


def _read_in_child(args):
    data_dir, i = args
    s = get_task("rendered-sst2").load("train", data_dir)
    return class_of(s.image(i), 2)


def test_zip_handles_are_reopened_after_fork(tmp_path):
    import multiprocessing as mp

    labels = [0, 1, 1, 0, 1, 0]
    make_iris_task(tmp_path, "rendered-sst2", {"train": labels, "val": [0], "test": [1]})
    s = get_task("rendered-sst2").load("train", tmp_path)
    assert class_of(s.image(0), 2) == 0  # the parent holds an open handle now
    with mp.get_context("fork").Pool(2) as pool:
        got = pool.map(_read_in_child, [(str(tmp_path), i) for i in range(len(labels))])
    assert got == labels


# ----------------------------------------------------------------- flowers: TFDS class names on the hub
# tensorflow_datasets' oxford_flowers102 names (its label ids are the official ones, ELEVATER's order),
# as CLIP_benchmark's wds_vtab-flowers carries them.
TFDS_FLOWERS = [
    "pink primrose",
    "hard-leaved pocket orchid",
    "canterbury bells",
    "sweet pea",
    "english marigold",
    "tiger lily",
    "moon orchid",
    "bird of paradise",
    "monkshood",
    "globe thistle",
    "snapdragon",
    "colt's foot",
    "king protea",
    "spear thistle",
    "yellow iris",
    "globe-flower",
    "purple coneflower",
    "peruvian lily",
    "balloon flower",
    "giant white arum lily",
    "fire lily",
    "pincushion flower",
    "fritillary",
    "red ginger",
    "grape hyacinth",
    "corn poppy",
    "prince of wales feathers",
    "stemless gentian",
    "artichoke",
    "sweet william",
    "carnation",
    "garden phlox",
    "love in the mist",
    "mexican aster",
    "alpine sea holly",
    "ruby-lipped cattleya",
    "cape flower",
    "great masterwort",
    "siam tulip",
    "lenten rose",
    "barbeton daisy",
    "daffodil",
    "sword lily",
    "poinsettia",
    "bolero deep blue",
    "wallflower",
    "marigold",
    "buttercup",
    "oxeye daisy",
    "common dandelion",
    "petunia",
    "wild pansy",
    "primula",
    "sunflower",
    "pelargonium",
    "bishop of llandaff",
    "gaura",
    "geranium",
    "orange dahlia",
    "pink-yellow dahlia?",
    "cautleya spicata",
    "japanese anemone",
    "black-eyed susan",
    "silverbush",
    "californian poppy",
    "osteospermum",
    "spring crocus",
    "bearded iris",
    "windflower",
    "tree poppy",
    "gazania",
    "azalea",
    "water lily",
    "rose",
    "thorn apple",
    "morning glory",
    "passion flower",
    "lotus",
    "toad lily",
    "anthurium",
    "frangipani",
    "clematis",
    "hibiscus",
    "columbine",
    "desert-rose",
    "tree mallow",
    "magnolia",
    "cyclamen",
    "watercress",
    "canna lily",
    "hippeastrum",
    "bee balm",
    "ball moss",
    "foxglove",
    "bougainvillea",
    "camellia",
    "mallow",
    "mexican petunia",
    "bromelia",
    "blanket flower",
    "trumpet creeper",
    "blackberry lily",
]


def test_flowers_hub_mirror_with_tfds_names_loads_in_elevater_order(tmp_path, fake_hub):
    from mvlpt.datasets.labels import normalise

    elevater_names = list(get_task("oxford-flower-102").classnames)
    differ = {i: (a, b) for i, (a, b) in enumerate(zip(TFDS_FLOWERS, elevater_names)) if normalise(a) != normalise(b)}
    assert differ == {59: ("pink-yellow dahlia?", "pink and yellow dahlia"), 92: ("ball moss", "air plant")}
    hub, _ = fake_hub
    train = [(c, c) for c in (0, 59, 92, 101, 15)]
    make_wds_folder(hub / "clip-benchmark" / "wds_vtab-flowers", TFDS_FLOWERS, {"train": train, "test": train})
    data = tmp_path / "data"
    routes.fetch("oxford-flower-102", data)
    tr = get_task("oxford-flower-102").load("train", data)
    assert list(tr.labels) == [0, 59, 92, 101, 15]
    assert [class_of(tr.image(i), 102) for i in range(len(tr))] == [0, 59, 92, 101, 15]


def test_flowers_hub_names_that_disagree_with_their_position_fail(tmp_path, fake_hub):
    hub, _ = fake_hub
    names = list(TFDS_FLOWERS)
    names[3], names[4] = names[4], names[3]  # mapped by name alone this would load, with two classes swapped
    make_wds_folder(hub / "clip-benchmark" / "wds_vtab-flowers", names, {"train": [(3, 3)], "test": [(4, 4)]})
    data = tmp_path / "data"
    routes.fetch("oxford-flower-102", data)
    with pytest.raises(
        MvlptError,
        match=r"names label 3 'english marigold', which matches ELEVATER's 'english "
        r"marigold' at position 4.*\(2 classes disagree\)",
    ):
        get_task("oxford-flower-102").load("train", data)

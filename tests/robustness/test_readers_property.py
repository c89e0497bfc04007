"""Property tests (Hypothesis) of the readers and writers of the study's files in mvlpt/io.py,
mvlpt/study/results.py, mvlpt/tasks/fewshot.py and mvlpt/training/checkpoints.py (issue 24): generated damaged and
adversarial inputs end in an :class:`MvlptError` (``mvlpt: error:`` on the command line) or in a
valid result, never in another exception, a wrong number or a replaced file.

Generated inputs per run of this file: the sum of the ``max_examples`` below (N_EXAMPLES)."""

import json
import math
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings, strategies as st

from fakes import make_record
from mvlpt import io
from mvlpt.errors import MvlptError, one_line
from mvlpt.study import layout, vocabulary
from mvlpt.study.results import read_result, write_result
from mvlpt.tasks import get_task
from mvlpt.tasks.fewshot import read_split
from mvlpt.training.checkpoints import load_prompt, load_state, read_prompt_meta, save_prompt, save_state

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
N = {
    "result_json": 100,
    "result_fields": 100,
    "result_bytes": 60,
    "split": 100,
    "prompt_bytes": 60,
    "prompt_meta": 60,
    "state": 60,
    "writer": 60,
    "distinct": 60,
}
N_EXAMPLES = sum(N.values())  # 700

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12
)


def _dir(tmp_path) -> Path:
    return Path(tempfile.mkdtemp(dir=tmp_path))


def _dump(value) -> str:
    return json.dumps(value, allow_nan=True)  # NaN/Infinity as a careless writer leaves them


# --------------------------------------------------------------------------------------------------
# results: read_result / study.check_record
# --------------------------------------------------------------------------------------------------
def _valid_or_error(path):
    try:
        rec = read_result(path)
    except MvlptError as e:
        assert "\n" not in one_line(e)
        return None
    assert vocabulary.record_problem(rec) is None
    for k in ("test", "val"):
        assert isinstance(rec[k], (int, float)) and math.isfinite(rec[k]) and 0 <= rec[k] <= 1
    assert 0 <= rec["seed"] < 2**31 and isinstance(rec["seed"], int) and not isinstance(rec["seed"], bool)
    return rec


@settings(max_examples=N["result_json"], **SETTINGS)
@given(value=json_values)
@example(value=float("nan"))
def test_any_json_as_a_result_file(tmp_path, value):
    path = layout.RESULT.path(_dir(tmp_path), "coop", "a", "a", 1)
    path.parent.mkdir(parents=True)
    path.write_text(_dump(value))
    assert _valid_or_error(path) is None  # no arbitrary value is a record


FIELDS = list(make_record())
extra_fields = ["splits", "test_bootstrap", "shots_taken", "init_prompt", "val_loss", "select", "method_options", "compile"]


@settings(max_examples=N["result_fields"], **SETTINGS)
@given(
    changes=st.dictionaries(st.sampled_from(FIELDS + extra_fields), json_values, min_size=1, max_size=3),
    drop=st.lists(st.sampled_from(FIELDS), max_size=2),
)
@example(changes={"test": float("nan")}, drop=[])
@example(changes={"seed": -3}, drop=[])
@example(changes={"target": "a/../b"}, drop=[])
@example(changes={"splits": {"b": "x"}}, drop=[])
def test_a_damaged_result_record(tmp_path, changes, drop):
    rec = {**make_record(), **changes}
    for k in drop:
        rec.pop(k, None)
    seed = rec.get("seed")
    path = layout.RESULT.path(
        _dir(tmp_path), "coop", "a", "a", seed if isinstance(seed, int) and not isinstance(seed, bool) else 1
    )
    path.parent.mkdir(parents=True)
    path.write_text(_dump(rec))
    got = _valid_or_error(path)
    if got is not None:  # a valid record is read back as written: no number changed on the way
        assert got == json.loads(path.read_text())
        assert (got["method"], got["source"], got["target"], got["seed"]) == ("coop", "a", "a", seed)
    # the writer holds the same rule: what it refuses it does not write
    out = _dir(tmp_path) / "out.json"
    try:
        write_result({k: v for k, v in rec.items() if k != "format"}, out)
    except MvlptError:
        assert not out.exists()
    else:
        assert got is not None or "format" in drop or rec.get("format") != vocabulary.RESULT_FORMAT


@settings(max_examples=N["result_bytes"], **SETTINGS)
@given(data=st.binary(max_size=200), cut=st.integers(min_value=0, max_value=400))
@example(data=b"[" * 100000, cut=0)
@example(data=b"1" * 5000, cut=0)
@example(data=b"\xff\xfe{}", cut=0)
def test_damaged_bytes_of_a_result_file(tmp_path, data, cut):
    path = layout.RESULT.path(_dir(tmp_path), "coop", "a", "a", 1)
    path.parent.mkdir(parents=True)
    good = json.dumps({"format": vocabulary.RESULT_FORMAT, **make_record()}).encode()
    path.write_bytes(data if cut == 0 else good[:cut] + data)
    got = _valid_or_error(path)
    if got is not None:
        assert got == json.loads(good)


# --------------------------------------------------------------------------------------------------
# splits: read_split
# --------------------------------------------------------------------------------------------------
ids = st.text(alphabet="abcdef0123456789", min_size=0, max_size=3)


@settings(max_examples=N["split"], **SETTINGS)
@given(
    train=st.lists(ids | json_scalars, max_size=6),
    val=st.lists(ids | json_scalars, max_size=4),
    seed=json_scalars,
    shots=json_scalars,
    task=st.sampled_from(["shapes", "orientation", 3, None]),
    shots_taken=st.none() | json_values,
    raw=st.none() | st.binary(max_size=40),
)
def test_a_generated_split_file(tmp_path, train, val, seed, shots, task, shots_taken, raw):
    path = _dir(tmp_path) / "split.json"
    split = {"format": 1, "task": task, "seed": seed, "shots": shots, "n_classes": 4, "train": train, "val": val}
    if shots_taken is not None:
        split["shots_taken"] = shots_taken
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(_dump(split))
    try:
        got = read_split(path, "shapes")
    except MvlptError as e:
        assert "\n" not in one_line(e)
        return
    assert raw is None and got == json.loads(path.read_text())
    assert got["task"] == "shapes"
    for part in ("train", "val"):
        assert all(isinstance(i, str) and i for i in got[part]) and len(set(got[part])) == len(got[part])
    assert got["train"] and not set(got["train"]) & set(got["val"])
    assert isinstance(got["seed"], int) and 0 <= got["seed"] < 2**31 and isinstance(got["shots"], int) and got["shots"] >= 1
    assert "shots_taken" not in got or (
        isinstance(got["shots_taken"], dict) and isinstance(got["shots_taken"].get("short"), dict)
    )


# --------------------------------------------------------------------------------------------------
# prompts and states: mvlpt/training/checkpoints.py
# --------------------------------------------------------------------------------------------------
PROV = {
    "task": "orientation",
    "tasks": ["orientation"],
    "seed": 1,
    "shots": 3,
    "model": "mvlpt-tiny",  # tiny_clip: a random init
    "pretrained": None,
    "init_seed": 0,
    "config_hash": "0" * 16,
    "splits": {"orientation": "0" * 64},
    "best_epoch": 1,
    "mvlpt_version": "0",
}


@pytest.fixture(scope="module")
def learner(tiny_clip):
    from mvlpt.models.prompts import build_prompt_learner

    return build_prompt_learner("coop", tiny_clip, get_task("shapes").classnames, {}, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def prompt_bytes(learner, tmp_path_factory):
    path = tmp_path_factory.mktemp("prompt") / "p.safetensors"
    save_prompt(learner, path, PROV)
    return path.read_bytes()


def _load_prompt_or_error(learner, path):
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    try:
        prov = load_prompt(learner, path)
    except MvlptError as e:
        assert "\n" not in one_line(e)
        for k, v in learner.state_dict().items():  # a refused file changed nothing
            assert torch.equal(v, before[k])
        return None
    finally:
        learner.load_state_dict(before)
    return prov


@settings(max_examples=N["prompt_bytes"], **SETTINGS)
@given(
    cut=st.integers(min_value=0, max_value=4000),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=3),
    tail=st.binary(max_size=16),
)
@example(cut=0, flips=[], tail=b"")
@example(cut=8, flips=[], tail=b"")
def test_damaged_bytes_of_a_prompt_file(tmp_path, learner, prompt_bytes, cut, flips, tail):
    data = bytearray(prompt_bytes[:cut] if cut else prompt_bytes)
    for pos, x in flips:
        if data:
            data[pos % len(data)] ^= x
    data += tail
    path = _dir(tmp_path) / "p.safetensors"
    path.write_bytes(bytes(data))
    prov = _load_prompt_or_error(learner, path)
    if prov is not None:
        assert prov == PROV
    if bytes(data) == prompt_bytes:
        assert prov == PROV  # the undamaged file loads


@settings(max_examples=N["prompt_meta"], **SETTINGS)
@given(
    changes=st.dictionaries(
        st.sampled_from(["format", "kind", "method", "options", "provenance", "provenance_hash"]),
        st.text(max_size=20) | json_values.map(_dump),
        max_size=3,
    ),
    prov_changes=st.dictionaries(st.sampled_from(list(PROV) + ["selected_by"]), json_values, max_size=2),
)
@example(changes={"options": "{"}, prov_changes={})
@example(changes={}, prov_changes={"seed": -1})
def test_damaged_metadata_of_a_prompt_file(tmp_path, learner, prompt_bytes, changes, prov_changes):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = _dir(tmp_path) / "p.safetensors"
    path.write_bytes(prompt_bytes)
    with safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata())
    if prov_changes:
        meta["provenance"] = _dump({**PROV, **prov_changes})
    meta.update(changes)
    save_file(load_file(str(path)), str(path), metadata=meta)
    try:
        read_prompt_meta(path)
    except MvlptError:
        pass
    prov = _load_prompt_or_error(learner, path)
    if prov is not None:  # accepted: what the file says is what was written, or an edit without its hash
        assert prov == json.loads(meta["provenance"])
        assert "provenance_hash" in changes or prov == PROV


@settings(max_examples=N["state"], **SETTINGS)
@given(meta=json_values, cut=st.integers(min_value=0, max_value=600), flip=st.integers(0, 10**6))
@example(meta={"next_epoch": 1, "config_hashes": ["0"], "best": {"1": {"a": {"metric": 0.5, "epoch": 0}}}}, cut=0, flip=0)
def test_a_damaged_state_file(tmp_path, meta, cut, flip):
    path = _dir(tmp_path) / "state.safetensors"
    save_state(path, {"1/param/ctx": torch.arange(4.0)}, meta if isinstance(meta, dict) else {"x": meta})
    data = bytearray(path.read_bytes())
    if cut:
        data = data[:cut]
        if data:
            data[flip % len(data)] ^= 0x5A
    path.write_bytes(bytes(data))
    try:
        tensors, got = load_state(path)
    except MvlptError as e:
        assert "\n" not in one_line(e)
        return
    assert isinstance(got["next_epoch"], int) and isinstance(got["best"], dict) and isinstance(got["config_hashes"], list)
    assert set(tensors) == {"1/param/ctx"}


# --------------------------------------------------------------------------------------------------
# the atomic writers: mvlpt/io.py
# --------------------------------------------------------------------------------------------------
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=90)


@settings(max_examples=N["writer"], **SETTINGS)
@given(
    name=names | st.sampled_from(["x" * 241, "x" * 242, "é" * 130, ".", ".."]),
    kind=st.sampled_from(["new", "file", "folder", "fifo", "symlink-to-fifo", "symlink-to-file", "parent-is-file"]),
    grouped=st.booleans(),
    value=json_values,
)
def test_the_atomic_writer(tmp_path, name, kind, grouped, value):
    d = _dir(tmp_path)
    dest = d / name
    try:
        if kind == "file":
            dest.write_text("old")
        elif kind == "folder":
            dest.mkdir()
        elif kind == "fifo":
            os.mkfifo(dest)
        elif kind.startswith("symlink"):
            target = d / "target"
            os.mkfifo(target) if kind == "symlink-to-fifo" else target.write_text("old")
            if dest.name == "target":
                return
            dest.symlink_to(target)
        elif kind == "parent-is-file":
            (d / "p").write_text("old")
            dest = d / "p" / name
            if dest == d / "p":  # pathlib reads p/. as p: a regular file
                kind = "file"
    except OSError:
        return  # a name the file system itself refuses to create: nothing to try
    before = {p.name: os.lstat(p).st_mode for p in d.iterdir()}
    try:
        if grouped:
            with io.write_together():
                io.write_json(value, dest)
        else:
            io.write_json(value, dest)
    except MvlptError as e:
        assert "\n" not in one_line(e)
        after = {p.name: os.lstat(p).st_mode for p in d.iterdir()}
        assert after == before  # nothing replaced, nothing left
        return
    assert os.path.isfile(dest) and json.loads(Path(dest).read_text()) == json.loads(_dump(value))
    assert kind in ("new", "file", "symlink-to-file")
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]
    if kind == "symlink-to-file":  # the link is replaced by the file, the file it pointed to is left alone
        assert (d / "target").read_text() == "old"


@settings(max_examples=N["distinct"], **SETTINGS)
@given(
    spellings=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]), st.sampled_from(["plain", "dot", "dotdot", "symlink", "hardlink", "linked-dir"])
        ),
        min_size=1,
        max_size=4,
    ),
    exists=st.booleans(),
)
def test_outputs_are_compared_as_files(tmp_path, spellings, exists):
    d = _dir(tmp_path)
    (d / "sub").mkdir()
    (d / "alias").symlink_to(d / "sub")
    paths = []
    for i, (name, how) in enumerate(spellings):
        real = d / "sub" / name
        if exists or how in ("symlink", "hardlink"):
            real.touch()
        if how == "plain":
            p = real
        elif how == "dot":
            p = d / "sub" / "." / name
        elif how == "dotdot":
            p = d / "sub" / ".." / "sub" / name
        elif how == "linked-dir":
            p = d / "alias" / name
        else:
            p = d / f"{how}{i}-{name}"
            os.symlink(real, p) if how == "symlink" else os.link(real, p)
        paths.append(p)
    same = len({n for n, _ in spellings}) < len(spellings)
    try:
        io.check_writable(paths)
    except MvlptError as e:
        assert same and "given as the output of two different things" in str(e)
    else:
        assert not same

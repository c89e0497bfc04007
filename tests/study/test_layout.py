"""mvlpt.study.layout: every path of a study, one pattern per kind of file; and mvlpt.study.wildcards.

A template (what the rules declare) and a concrete path (what the package reads and writes) come
from one pattern, so they cannot disagree; these tests hold that, hold the rules to take their
paths from it (every output, log and benchmark of the demo study's DAG is one of its entries), and
pin the places the study has always used (results written before must still be found).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mvlpt.study import layout
from mvlpt.study.wildcards import alternation, joint_pair_constraints, off_diagonal_target, pair_args, q

REPO = Path(__file__).resolve().parents[2]
ENTRIES = {name: e for name, e in vars(layout).items() if isinstance(e, layout.Entry)}


def _values(entry: layout.Entry) -> dict:
    """A value for every field of ``entry``: names with dashes and dots, integers for seeds and shots."""
    special = {
        "seed": 3,
        "shots": 16,
        "round": 2,
        "ext": "csv",
        "job": "train_single/coop/a-b/seeds1-2",
        "where": "g0123456789/task-b",
        "stem": "seeds1-2",
        "tag": "0a1b2c3d4e",
    }
    return {f: special.get(f, f"{f}-x.y" if f not in ("method", "kind") else f"{f}1") for f in entry.fields}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_template_round_trips_with_its_concrete_path(name):
    entry = ENTRIES[name]
    values = _values(entry)
    root = "some/results"
    filled = {**values, entry.root: root}
    path = entry.path(**filled)
    assert entry.template(**filled) == str(path) == path.as_posix()
    assert entry.template(root) == entry.pattern.replace("{" + entry.root + "}", root, 1)  # the rest: wildcards
    fields = {k: v for k, v in values.items() if k != entry.root}
    assert entry.parse(path, root=root) == fields
    assert entry.parse(path, root="other") is None
    if entry.fields[-1] not in ("job", "where"):  # no field of several components: any root folder
        assert entry.parse(path) == entry.parse(Path("/elsewhere") / path) == fields
    assert path.relative_to(root).as_posix() == entry.relative(**values)
    # positional values follow the pattern's order, the root first
    assert entry.path(*[filled[f] for f in entry.fields]) == path


def test_result_layout_is_the_one_results_were_always_written_to():
    path = layout.RESULT.path("out", "upt", "glyph-digits", "shape-colours", 3)
    assert path == Path("out/upt/glyph-digits__shape-colours/seed3.json")
    assert layout.parse_result_path(path) == ("upt", "glyph-digits", "shape-colours", 3)
    assert layout.RESULT.template("out", "upt", "glyph-digits", "shape-colours", 3) == str(path)
    assert layout.RESULT.template("r") == "r/{method}/{source}__{target}/seed{seed}.json"  # Snakemake wildcards
    assert layout.RESULT.template("r", source="{task}", target="{task}") == "r/{method}/{task}__{task}/seed{seed}.json"
    assert layout.RESULT_GLOB == "*/*__*/seed*.json"
    assert layout.parse_result_path("out/upt/glyph-digits/seed3.json") is None  # no source__target folder
    assert layout.parse_result_path("out/upt/a__b/result.json") is None
    assert layout.parse_result_path("out/upt/a__b__c/seed-1.json") == ("upt", "a", "b__c", -1)
    # the other kinds of file are not results, even though some end in seed{n}.json
    assert layout.parse_result_path(layout.REFERENCE_PROBE.path("r/reference", "t", 1)) is None
    assert layout.parse_result_path(layout.MULTITASK_RESULT.path("r", "coop", "init", "g0", "t", 1)) is None


def test_places_of_the_other_files_are_unchanged():
    assert str(layout.SPLIT.path("c", "dtd", 5, 2)) == "c/splits/dtd/shots5_seed2.json"
    assert str(layout.FEATURES_DONE.path("c", "dtd", 5)) == "c/features/dtd.shots5.done.json"
    assert (
        str(layout.FEATURES.path("c", "vit", "dtd", layout.features_name(5, 2, "val")))
        == "c/features/vit/dtd/shots5_seed2_val.safetensors"
    )
    assert str(layout.PROMPT.path("r", "coop", "dtd", 1)) == "r/prompts/coop/dtd/seed1.safetensors"
    assert str(layout.MATRIX.path(layout.TABLES_DIR.path("r"), "coop", "gain", "csv")) == "r/tables/matrices/coop_gain.csv"
    assert str(layout.GROUP_PROMPT.path("r", "coop", "g1", 2)) == "r/multitask/prompts/coop/g1/seed2.safetensors"
    assert str(layout.MULTITASK_GROUPS.path("r")) == "r/multitask/groups.csv"
    assert str(layout.REFERENCE_ZEROSHOT.path(layout.REFERENCE_DIR.path("r"), "dtd")) == "r/reference/zeroshot/dtd.json"
    assert str(layout.EMBEDDING.path("c", "dtd", "labels")) == "c/similarity/dtd.labels.npz"


def test_template_refuses_what_is_not_a_field():
    with pytest.raises(TypeError, match="no field 'task'"):
        layout.RESULT.template("r", task="a")
    with pytest.raises(TypeError, match="missing seed"):
        layout.RESULT.path("r", "coop", "a", "b")
    with pytest.raises(ValueError, match="root folder"):
        layout.Entry("tables/{name}.csv")


def test_layout_imports_neither_torch_nor_numpy():
    """The workflow imports mvlpt.study.layout and mvlpt.study.wildcards on every Snakemake start."""
    code = (
        "import sys; import mvlpt.study.layout, mvlpt.study.wildcards, mvlpt.study.vocabulary; "
        "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------------
# Wildcard constraints
# ------------------------------------------------------------------------------------------------
def _joint_output_regex(tasks):
    c = joint_pair_constraints(tasks)
    ab = re.compile(rf"r/coop/(?P<a>{c['a']})__(?P<b>{c['b']})/seed1\.json$")
    ba = re.compile(rf"r/coop/(?P<b>{c['b']})__(?P<a>{c['a']})/seed1\.json$")
    return ab, ba


@pytest.mark.parametrize("tasks", [["x", "y", "z"], ["a-b", "a", "b", "a-b-c"], ["t.1", "t_1", "t1"]])
def test_joint_constraints_give_every_unordered_pair_one_job_in_config_order(tasks):
    ab, ba = _joint_output_regex(tasks)
    for i, s in enumerate(tasks):
        for j, t in enumerate(tasks):
            if s == t:
                continue
            path = f"r/coop/{s}__{t}/seed1.json"
            got = [m.groupdict() for m in (ab.match(path), ba.match(path)) if m]
            assert len(got) == 1, (path, got)  # one rule output pattern claims the file
            first, second = (s, t) if i < j else (t, s)
            assert got[0] == {"a": first, "b": second}, path


def test_joint_constraints_of_one_task_match_nothing():
    c = joint_pair_constraints(["only"])
    assert not re.match(rf"(?:{c['a']})", "only__only/") and not re.match(rf"(?:{c['b']})", "only")


def test_off_diagonal_target_and_alternation():
    tasks = ["a", "a.b", "b"]
    rx = re.compile(rf"r/coop/(?P<source>{alternation(tasks)})__(?P<target>{off_diagonal_target(tasks)})/seed1\.json$")
    assert rx.match("r/coop/a__b/seed1.json") and rx.match("r/coop/a__a.b/seed1.json")
    assert not rx.match("r/coop/a__a/seed1.json") and not rx.match("r/coop/a.b__a.b/seed1.json")
    assert not re.fullmatch(alternation(tasks), "aXb")  # the dot is a dot


def test_shell_quoting():
    assert q(["a b", 1, "c"]) == "'a b' 1 c"
    assert pair_args("--split", [("t", "x y/{seed}.json")]) == "--split 't=x y/{seed}.json'"


# ------------------------------------------------------------------------------------------------
# The rules take their paths from mvlpt.study.layout
# ------------------------------------------------------------------------------------------------
def test_every_output_log_and_benchmark_of_the_dag_is_a_layout_entry(tmp_path):
    """Every file the demo study's jobs declare (outputs, logs, benchmarks) lies under the study's
    results, cache or log folder where one of mvlpt.study.layout's entries puts it."""
    snakemake = Path(sys.executable).parent / "snakemake"
    res = subprocess.run(
        [
            str(snakemake),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "all",
            "multitask",
            "budgeted",
            "-n",
            "-p",
            "--configfile",
            str(REPO / "config" / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    roots = {"results": "results", "cache": "resources/cache", "logs": "logs"}
    files = set()
    for line in out.splitlines():
        m = re.match(r"\s+(output|log|benchmark): (.*)$", line)
        if m:
            files.update(f.strip() for f in m[2].split(", "))
    assert len(files) > 100
    # the folders of the entries: the study's three, and those under them (TABLES_DIR: {results}/tables, ...)
    folders = dict(roots)
    for name, e in ENTRIES.items():
        if name.endswith("_DIR"):
            folders[e.relative().rsplit("/", 1)[-1]] = e.path(roots[e.root]).as_posix()
    unplaced = []
    for f in sorted(files):
        if not any(
            (got := e.parse(f, root=folders[e.root])) is not None and e.path(folders[e.root], **got).as_posix() == f
            for name, e in ENTRIES.items()
            if e.root in folders and not name.endswith("_DIR")
        ):
            unplaced.append(f)
    assert not unplaced, unplaced[:10]


def test_rule_files_spell_no_paths_of_their_own():
    """Outputs, logs and benchmarks in workflow/rules/*.smk are built from mvlpt.study.layout (directly or
    through common.smk's helpers), never written out as f-strings (a log's job name aside)."""
    offenders = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        section = None
        for n, line in enumerate(smk.read_text().splitlines(), 1):
            m = re.match(
                r"^\s+(output|log|benchmark|input|params|shell|resources|wildcard_constraints|threads|retries|"
                r"conda|localrule|message|run|default_target)\s*:",
                line,
            )
            if m:
                section = m[1]
            elif re.match(r"^\S", line):
                section = None
            # a job's name given to the log helpers (job_log, mt_log, ...) is a name, not a place
            if section in ("output", "log", "benchmark") and re.search(r"(?<!_log\()(?<!_benchmark\()\bf\"[^\"]*/", line):
                offenders.append(f"{smk.name}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_the_folders_of_the_studies_inside_a_study():
    assert layout.SHOT_STUDY.path("results", 5).as_posix() == "results/shots5"
    assert layout.SHOT_STUDY.relative(shots=20) == "shots20"
    assert layout.SHOT_STUDY.parse("out/x/shots12") == {"shots": 12}
    assert layout.SHOT_STUDY.parse("results/shotsfive") is None
    assert layout.TABLE1_STUDY.path("resources/cache").as_posix() == "resources/cache/table1"
    # a study below its folder lays its files out as any study does
    assert layout.RESULT.parse("results/shots5/coop/a__b/seed1.json") == {
        "method": "coop",
        "source": "a",
        "target": "b",
        "seed": 1,
    }

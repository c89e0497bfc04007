"""Where a study keeps its files: one definition per kind of file, in both forms the code needs.

Every entry (:class:`Entry`) is a pattern such as ``{results}/{method}/{source}__{target}/seed{seed}.json``
whose first field is the folder it lies under. From the one pattern come:

* :meth:`Entry.path`: a concrete :class:`~pathlib.Path` (every field given, in the pattern's order or
  by name), what the package's readers and writers use;
* :meth:`Entry.template`: the pattern with some fields filled in and the others left as Snakemake
  wildcards (``{task}``), what the rules in ``workflow/rules/*.smk`` declare as outputs;
* :meth:`Entry.parse`: the fields of a concrete path (None where it is not laid out so), and
  :meth:`Entry.glob`: a glob below the root folder.

The folders the entries lie under are entries too (``TABLES_DIR = {results}/tables``), so a command
given another output folder (``mvlpt collect --out-dir``) lays its files out the same way below it.
The layout of a study (its file tree) is in docs/workflow.md; tests/study/test_layout.py holds every
template equal to its concrete path and every rule's output taken from here.

This module imports neither torch nor numpy: the workflow imports it on every Snakemake start.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path

# what a field holds, where it is narrower than one path component: seeds, shots and budget rounds (read
# back as integers), file extensions and embedding kinds (no dot)
_FIELD_RE = {"seed": r"-?\d+", "shots": r"\d+", "round": r"\d+", "ext": r"[^/.]+", "kind": r"[^/.]+"}
_INT_FIELDS = frozenset({"seed", "shots", "round"})


class _Others(dict):
    """Values for str.format_map; a field without one becomes ``other % name``."""

    def __init__(self, values: dict, other: str):
        super().__init__(values)
        self.other = other

    def __missing__(self, name: str) -> str:
        return self.other.replace("%s", name)


class Entry:
    """A kind of file (or folder) of a study: ``pattern``'s first field is the folder it lies under.

    ``spans``: fields that may hold several path components (a log's job name); :meth:`parse` reads
    them back given the root folder."""

    def __init__(self, pattern: str, doc: str = "", spans: tuple[str, ...] = ()):
        parsed = list(string.Formatter().parse(pattern))
        self.pattern = pattern
        self.fields = tuple(f for _, f, _, _ in parsed if f is not None)
        self._field_set = frozenset(self.fields)
        if any(spec or conv for _, f, spec, conv in parsed if f is not None) or not all(f.isidentifier() for f in self.fields):
            raise ValueError(f"layout pattern {pattern!r}: fields are plain names")
        if not self.fields or not pattern.startswith("{" + self.fields[0] + "}/"):
            raise ValueError(f"layout pattern {pattern!r} must start with its root folder field")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"layout pattern {pattern!r} names a field twice")
        self.root = self.fields[0]
        self.__doc__ = doc
        rest = []
        for literal, field, _, _ in parsed[1:]:  # parsed[0]: the root field
            rest.append(re.escape(literal))
            if field is not None and field != self.root:
                part = ".+?" if field in spans else _FIELD_RE.get(field, r"[^/]+?")
                rest.append(f"(?P<{field}>{part})")
        # the part below the root folder: the root itself can be any folder
        below = "".join(rest).removeprefix(re.escape("/")) + "$"
        self._regex = re.compile(r"(?:^|/)" + below)
        self._below = re.compile(below)

    def __repr__(self) -> str:
        return f"Entry({self.pattern!r})"

    def _values(self, args: tuple, kwargs: dict, complete: bool) -> dict:
        if len(args) > len(self.fields):
            raise TypeError(f"{self.pattern}: {len(args)} values for {len(self.fields)} fields")
        values = dict(zip(self.fields, args))
        if kwargs:
            for k in kwargs:
                if k not in self._field_set:
                    raise TypeError(f"{self.pattern}: no field {k!r}")
                if k in values:
                    raise TypeError(f"{self.pattern}: field {k!r} given twice")
            values.update(kwargs)
        if complete and len(values) < len(self.fields):
            missing = [f for f in self.fields if f not in values]
            raise TypeError(f"{self.pattern}: missing {', '.join(missing)}")
        return values

    def _fill(self, values: dict, other: str = "{%s}") -> str:
        """The pattern with ``values`` (as ``str`` gives them) and ``other % name`` for the other fields."""
        if len(values) == len(self.fields):
            return self.pattern.format_map(values)  # the common case, in C
        return self.pattern.format_map(_Others(values, other))

    def template(self, *args, **kwargs) -> str:
        """The pattern with the given fields filled in (positional: in the pattern's order, the root
        first); the others stay ``{name}``, a Snakemake wildcard. A value may itself be a wildcard
        (``source="{task}"``) or a Snakemake placeholder."""
        return self._fill(self._values(args, kwargs, complete=False))

    def path(self, *args, **kwargs) -> Path:
        """The concrete path: every field given (positional: in the pattern's order, the root first)."""
        values = self._values(args, kwargs, complete=True)
        return Path(values.pop(self.root)) / self.relative(**values)

    def relative(self, **kwargs) -> str:
        """The part below the root folder, the given fields filled in, the others ``{name}``."""
        values = self._values((), kwargs, complete=False)
        values.pop(self.root, None)
        return self._fill(values).split("/", 1)[1]

    def glob(self, **kwargs) -> str:
        """A glob below the root folder: the given fields filled in, the others ``*``."""
        values = self._values((), kwargs, complete=False)
        values.pop(self.root, None)
        return self._fill(values, other="*").split("/", 1)[1]

    def parse(self, path: str | os.PathLike, root: str | os.PathLike | None = None) -> dict | None:
        """The fields of ``path`` below its root folder (``seed`` and ``shots`` as integers), or None
        where it is not laid out as this entry says. Without ``root`` the root can be any folder (not
        for an entry with ``spans``, whose fields could then swallow it)."""
        if root is None:
            m = self._regex.search(Path(path).as_posix())
        else:
            try:
                m = self._below.match(Path(path).relative_to(root).as_posix())
            except ValueError:  # not under root
                return None
        if m is None:
            return None
        return {k: int(v) if k in _INT_FIELDS else v for k, v in m.groupdict().items()}


# --------------------------------------------------------------------------------------------------
# Studies inside a study
# --------------------------------------------------------------------------------------------------
SHOT_STUDY = Entry(
    "{study}/shots{shots}",
    "The folder of one shot count of a study whose `shots` lists several (mvlpt.study.settings.shot_study): "
    "its results, its cache and its logs each lie below one (`results/shots5/coop/...`); a scalar `shots` "
    "has none, so a single-shot study keeps its paths.",
)
TABLE1_STUDY = Entry(
    "{study}/table1",
    "The folder of the paper's Table 1 setting (mvlpt.study.settings.table1_study): its results, cache and logs.",
)

# --------------------------------------------------------------------------------------------------
# Results (config `results_dir`)
# --------------------------------------------------------------------------------------------------
RESULT = Entry(
    "{results}/{method}/{source}__{target}/seed{seed}.json",
    "One run's record on one target (baseline: source == target; mvlpt.study.vocabulary.RESULT_FIELDS).",
)
PROMPT = Entry(
    "{results}/prompts/{method}/{task}/seed{seed}.safetensors",
    "A baseline run's learned prompt (the sequential runs start from it; the prompt predictors read it).",
)

TABLES_DIR = Entry("{results}/tables")
TABLE = Entry("{tables}/{name}.{ext}", "A table of the analysis (mvlpt.analysis.tables.write_table: .csv and .parquet).")
MATRIX = Entry("{tables}/matrices/{method}_{stat}.{ext}", "A source x target matrix of one method and statistic.")

SIMILARITY_DIR = Entry("{results}/similarity")
SIMILARITY = Entry("{similarity}/{measure}.{ext}", "A task x task similarity table of one measure.")

FIGURES_DIR = Entry("{results}/figures")
FIGURE = Entry("{figures}/{name}.{ext}", "A figure (mvlpt.analysis.plots.save_figure: .png and .pdf).")
HEATMAP_FIGURE = Entry("{figures}/{stat}_{method}.{ext}", "The gain (or interaction) heatmap of one method.")
SIMILARITY_FIGURE = Entry("{figures}/similarity_{measure}.{ext}", "The similarity heatmap of one measure.")
SCATTER_FIGURE = Entry("{figures}/scatter_{method}.{ext}", "Gain against every similarity measure, one method.")

PREDICTORS_DIR = Entry("{results}/predictors")
PREDICTOR = Entry("{predictors}/{predictor}.{ext}", "A shared predictor's matrix (.csv, .parquet) and cost (.json).")
PROMPT_PREDICTOR = Entry("{predictors}/{method}/{predictor}.{ext}", "A prompt predictor's matrix of one method.")

REFERENCE_DIR = Entry("{results}/reference")
REFERENCE_ZEROSHOT = Entry("{reference}/zeroshot/{task}.json", "Zero-shot CLIP on one task (mvlpt.analysis.reference).")
REFERENCE_PROBE = Entry(
    "{reference}/linear_probe/{task}/seed{seed}.json",
    "The few-shot linear probe on one task and split seed (mvlpt.analysis.reference).",
)

MULTITASK_DIR = Entry("{results}/multitask")
MULTITASK_GROUPS = Entry("{results}/multitask/groups.csv", "The chosen groups of the multitask study (mvlpt.transfer.grouping).")
MULTITASK_RESULT = Entry(
    "{results}/multitask/{method}/{mode}/{group}/{target}/seed{seed}.json",
    "A multitask result; group: mvlpt.study.vocabulary.group_id of the sources (init) or of the tasks "
    "trained together, target included (joint).",
)
MULTITASK_JOINT = Entry("{results}/multitask/{method}/joint/{group}", "The folder of one joint group run (every member, seed).")
GROUP_PROMPT = Entry(
    "{results}/multitask/prompts/{method}/{group}/seed{seed}.safetensors", "A group's source prompt (mode init)."
)
GROUP_PROMPT_AVERAGED = Entry(
    "{results}/multitask/prompts/{method}/{group}/averaged.safetensors",
    "A group's source prompt averaged over the seeds (multitask.source_prompt: averaged; mode init).",
)

BUDGET_DIR = Entry("{results}/budget")
BUDGET_ROUND = Entry(
    "{budget}/{method}/round{round}.csv",
    "The pairs one round of the budgeted study chose for one method, ranked (mvlpt.study.budget.write_round).",
)
BUDGET_TABLE = Entry(
    "{budget}/{method}/{name}.{ext}",
    "A table of the budgeted study of one method (mvlpt.transfer.budget_rounds: completed, best_source, progress).",
)
BUDGET_FIGURE = Entry(
    "{budget}/{method}/figures/{name}.{ext}",
    "A figure of the budgeted study of one method (completed: the heatmap; progress: what the completion says by round).",
)

# --------------------------------------------------------------------------------------------------
# Caches (config `cache_dir`): deterministic, never outputs a finished run depends on for its identity
# --------------------------------------------------------------------------------------------------
SPLIT = Entry("{cache}/splits/{task}/shots{shots}_seed{seed}.json", "A pinned few-shot split (mvlpt split).")
FEATURES_DONE = Entry(
    "{cache}/features/{task}.shots{shots}.done.json",
    "The marker of a task's complete frozen image features (mvlpt features --done).",
)
FEATURES = Entry(
    "{cache}/features/{model}/{task}/{name}.safetensors",
    "Frozen image features of one split part (mvlpt.training.features; model: the CLIP's key).",
)
FEATURES_NAME = "shots{shots}_seed{seed}_{part}"  # ``name`` of a few-shot split's part (train, val) in FEATURES
EMBEDDING = Entry("{cache}/similarity/{task}.{kind}.npz", "A task's embeddings of one kind (images, labels, fewshot).")
STATE = Entry(
    "{cache}/state/{method}/{source}__{target}/{stem}.{tag}.state.safetensors",
    "The resumable state of a pairwise training job (not an output: removed when the run ends).",
)
MULTITASK_STATE = Entry(
    "{cache}/state/multitask/{method}/{kind}/{where}/{stem}.{tag}.state.safetensors",
    "The resumable state of a multitask training job (where: its group, or group/target).",
    spans=("where",),
)

# --------------------------------------------------------------------------------------------------
# Logs and benchmarks of the workflow's jobs (relative to the working folder)
# --------------------------------------------------------------------------------------------------
LOGS = "logs"
LOG = Entry("{logs}/{job}.log", "A job's log; job: the rule's folder and the job's name.", spans=("job",))
BENCHMARK = Entry("{logs}/benchmarks/{job}.tsv", "A training job's time and memory (Snakemake's benchmark).", spans=("job",))


def features_name(shots: int | str, seed: int | str, part: str) -> str:
    """The FEATURES ``name`` of one part (train, val) of a few-shot split."""
    return FEATURES_NAME.format(shots=shots, seed=seed, part=part)


def parse_result_path(path: str | os.PathLike) -> tuple[str, str, str, int] | None:
    """(method, source, target, seed) from a result file's place, or None if it is not laid out as one."""
    got = RESULT.parse(path)
    return None if got is None else (got["method"], got["source"], got["target"], got["seed"])


RESULT_GLOB = RESULT.glob()  # */*__*/seed*.json below a results folder

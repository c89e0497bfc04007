"""The study config, typed, with one home for its defaults (issue 23).

* **One schema**: ``mvlpt/study/config.schema.yaml`` (package data) states the keys, types, ranges and the
  defaults of the study config. Everything else reads them from it: :data:`DEFAULTS` (top level),
  :data:`ANALYSIS_DEFAULTS`, :data:`SIMILARITY_DEFAULTS`, :data:`PREDICTOR_DEFAULTS`,
  :data:`MULTITASK_DEFAULTS`, :data:`BUDGET_DEFAULTS` (a key the schema gives no default is None: "the study's own", see the
  schema's descriptions) and the section dataclasses below are derived from it on import. The one
  exception is ``train``: its defaults are :class:`mvlpt.training.config.TrainConfig`'s (what ``mvlpt train``
  uses without a config); the schema states only the types of its keys.
* **One check**: :func:`load` (a config dict -> :class:`StudyConfig`, or one sentence,
  :class:`~mvlpt.errors.MvlptError`) applies :func:`mvlpt.study.configcheck.rule_problems` and fills in the
  defaults. The workflow calls it once at start (``workflow/rules/config.smk``), ``mvlpt preflight``
  applies the same rules (:func:`problems`).

Cheap on purpose: every Snakemake start and every job imports this (PyYAML's C loader reads the
schema in milliseconds; no torch, no numpy).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from importlib import resources
from pathlib import Path
from typing import Any

from mvlpt.errors import MvlptError
from mvlpt.training.config import TrainConfig

SCHEMA_FILE = "config.schema.yaml"


def schema_path() -> Path:
    """The config schema's file (package data; a JSON schema written as YAML)."""
    return Path(str(resources.files(__package__).joinpath(SCHEMA_FILE)))


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8"), Loader=loader)


def schema() -> dict:
    """The config schema (a fresh copy: callers may change it)."""
    return copy.deepcopy(_schema())


def _defaults_of(properties: dict) -> dict:
    return {k: copy.deepcopy(p.get("default")) for k, p in properties.items()}


def section_defaults(section: str) -> dict:
    """Every key of config section ``section`` with the schema's default (None where it states none)."""
    try:
        props = _schema()["properties"][section]["properties"]
    except KeyError:
        raise MvlptError(f"the config has no section {section!r}; see config/README.md.") from None
    return _defaults_of(props)


def choices(*key: str) -> list:
    """The values the schema allows for config key ``key`` (a path: ``choices("analysis", "fdr")``): for
    command-line options that mirror a config key, without importing the module that implements them."""
    node = _schema()
    for k in key:
        node = node["properties"][k]
    return list(node["enum"])


def fill_defaults(cfg: dict) -> dict:
    """``cfg`` with the schema's defaults filled in, in place and returned: a missing key with a default
    gets it, and every mapping (given or defaulted) gets its own keys' defaults; keys without one stay
    absent. What Snakemake's ``validate`` does with a schema's defaults."""

    def fill(instance, sch):
        if not isinstance(instance, dict):
            return
        for key, sub in (sch.get("properties") or {}).items():
            if "default" in sub and key not in instance:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance and sub.get("properties"):
                fill(instance[key], sub)

    fill(cfg, _schema())
    return cfg


# The defaults, derived from the schema (above: one home).
DEFAULTS: dict[str, Any] = fill_defaults({})  # every key but `tasks`, sections with their own defaults
ANALYSIS_DEFAULTS: dict[str, Any] = section_defaults("analysis")
SIMILARITY_DEFAULTS: dict[str, Any] = section_defaults("similarity")
PREDICTOR_DEFAULTS: dict[str, Any] = section_defaults("predictors")
MULTITASK_DEFAULTS: dict[str, Any] = section_defaults("multitask")
BUDGET_DEFAULTS: dict[str, Any] = section_defaults("budget")
MODEL_DEFAULTS: dict[str, Any] = section_defaults("model")
ELEVATER_DEFAULTS: dict[str, Any] = section_defaults("elevater")
TABLE1_DEFAULTS: dict[str, Any] = section_defaults("table1")


def _section_class(section: str, doc: str) -> type:
    """A frozen dataclass with the fields of config section ``section`` and the schema's defaults."""
    fields = []
    for key, value in section_defaults(section).items():
        if isinstance(value, (list, dict)):
            fields.append((key, Any, dataclasses.field(default_factory=functools.partial(copy.deepcopy, value))))
        else:
            fields.append((key, Any, dataclasses.field(default=value)))
    cls = dataclasses.make_dataclass(
        section.title().replace("_", "") + "Settings", fields, frozen=True, namespace={"__doc__": doc, "__module__": __name__}
    )
    return cls


ModelSettings = _section_class("model", "The frozen CLIP: open_clip name, weights (None: random init), init seed.")
ElevaterSettings = _section_class("elevater", "Options of the ELEVATER suite (hateful_memes_metric None: ELEVATER's, ROC-AUC).")
SimilaritySettings = _section_class("similarity", "Task-similarity options (None: the study's own seeds, shots, device).")
AnalysisSettings = _section_class("analysis", "Correlation, resampling and figure options.")
PredictorSettings = _section_class("predictors", "Transferability predictors (names None: every one).")
MultitaskSettings = _section_class("multitask", "The multitask study (methods None: the study's, and SoftCPT with CoOp).")
Table1Settings = _section_class("table1", "The paper's Table 1 setting (methods None: the study's).")
BudgetSettings = _section_class(
    "budget", "The budgeted study (mvlpt.study.budget: pairs and rounds; initial None: every task twice each way)."
)


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """A checked study config with its defaults filled in (:func:`load`)."""

    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    shots: int | tuple[int, ...]  # a list in the config: shots is a study axis (shot_counts, shot_study)
    protocol: str  # mvlpt.study.protocol.PROTOCOLS; its values are already in the other fields
    fewshot_policy: str
    preflight: bool
    mode: str
    stack_seeds: bool
    model: ModelSettings
    train: TrainConfig  # the `train` section over TrainConfig's defaults
    train_options: dict  # the `train` section as given (the keys the config sets)
    method_options: dict
    elevater: ElevaterSettings
    device: str
    data_dir: str | None
    results_dir: str
    cache_dir: str
    similarity: SimilaritySettings
    analysis: AnalysisSettings
    predictors: PredictorSettings
    multitask: MultitaskSettings
    table1: Table1Settings
    budget: BudgetSettings
    config: dict = dataclasses.field(repr=False, compare=False, default_factory=dict)

    @property
    def shot_counts(self) -> tuple[int, ...]:
        """The study's shot counts (one, unless ``shots`` is a list)."""
        return tuple(shot_counts(self.config))

    def as_dict(self) -> dict:
        """The config as a plain dict, the schema's defaults filled in (what the workflow reads)."""
        return copy.deepcopy(self.config)


def shot_axis(cfg: dict) -> bool:
    """Whether config ``cfg`` makes shots a study axis (``shots`` a list, even of one count): each count
    is then a study of its own below ``shots{N}`` folders (:func:`shot_study`, docs/shots.md)."""
    return isinstance(cfg.get("shots", DEFAULTS["shots"]), (list, tuple))


def shot_counts(cfg: dict) -> list[int]:
    """The shot counts of config ``cfg``, in its order (a scalar ``shots``: that one)."""
    shots = cfg.get("shots", DEFAULTS["shots"])
    return [int(s) for s in shots] if isinstance(shots, (list, tuple)) else [int(shots)]


def shot_study(cfg: dict, shots: int) -> dict:
    """The config of shot count ``shots`` of a study whose ``shots`` is a list: that count, its results and
    cache folders below ``shots{N}`` (:data:`mvlpt.study.layout.SHOT_STUDY`); a study of its own, laid out as
    a single-shot study is. A config with a scalar ``shots`` is returned as it is (its paths stay)."""
    from mvlpt.study import layout

    out = copy.deepcopy(cfg)
    if not shot_axis(cfg):
        return out
    if int(shots) not in shot_counts(cfg):
        raise MvlptError(f"shot count {shots} is not among the config's shots ({', '.join(map(str, shot_counts(cfg)))}).")
    out["shots"] = int(shots)
    for key in ("results_dir", "cache_dir"):
        out[key] = layout.SHOT_STUDY.path(cfg.get(key, DEFAULTS[key]), int(shots)).as_posix()
    return out


def table1_study(cfg: dict) -> dict:
    """The config of the paper's Table 1 setting (config section ``table1``, defaults the paper's): its tasks
    the sources then the targets, its shots, its methods (default the study's), a multitask section of mode
    init and strategy fixed (every target's group is the sources), its results and cache below
    ``table1`` folders (:data:`mvlpt.study.layout.TABLE1_STUDY`). A study of its own, checked as one; one
    sentence where sources and targets overlap."""
    from mvlpt.study import layout

    t1 = {**TABLE1_DEFAULTS, **(cfg.get("table1") or {})}
    both = [t for t in t1["sources"] if t in set(t1["targets"])]
    if both:
        raise MvlptError(f"table1: {', '.join(both)} listed as source and as target; a target is never its own source.")
    out = copy.deepcopy(cfg)
    methods = list(t1["methods"] or cfg.get("methods") or DEFAULTS["methods"])
    out.update(
        tasks=[*t1["sources"], *t1["targets"]],
        shots=int(t1["shots"]),
        methods=methods,
        results_dir=layout.TABLE1_STUDY.path(cfg.get("results_dir", DEFAULTS["results_dir"])).as_posix(),
        cache_dir=layout.TABLE1_STUDY.path(cfg.get("cache_dir", DEFAULTS["cache_dir"])).as_posix(),
    )
    out["multitask"] = {
        **(cfg.get("multitask") or {}),
        "methods": methods,
        "modes": ["init"],
        "strategies": ["fixed"],
        "sources": list(t1["sources"]),
    }
    # the paper's source prompt is the 3 seeds' prompts averaged into one (the reference's avg_ckpt.py): the
    # option `multitask.source_prompt` of the reference protocol (issue 27, part 1), set where the schema has it
    if "source_prompt" in MULTITASK_DEFAULTS:
        out["multitask"]["source_prompt"] = "averaged"
    return out


def problems(cfg: dict, *, multitask: bool = False, budget: bool = False) -> list[str]:
    """What is wrong with ``cfg`` (a config dict as read from YAML), one clause each, without a final
    period (empty: nothing): :func:`mvlpt.study.configcheck.rule_problems`, the one rule set."""
    from mvlpt.study.configcheck import rule_problems

    return rule_problems(copy.deepcopy(cfg), multitask=multitask, budget=budget)


def load(cfg: dict, *, multitask: bool = False, budget: bool = False, checked: bool = False) -> StudyConfig:
    """The study config ``cfg`` checked (``multitask``, ``budget``: its ``multitask`` or ``budget`` section
    too, for a run that asks for that study) and typed, with
    the schema's defaults filled in; otherwise one sentence naming every problem (:class:`MvlptError`).
    ``checked``: the same config was checked already (the workflow's jobs on a cluster parse the workflow
    again, with the config its main process checked): typed only, without the schema and the registries."""
    if not isinstance(cfg, dict):
        raise MvlptError(
            f"invalid config: the config must be a mapping of settings (see config/README.md), got {type(cfg).__name__}."
        )
    found = [] if checked else problems(cfg, multitask=multitask, budget=budget)
    if found:
        raise MvlptError(f"invalid config: {'; '.join(found)}.")
    from mvlpt.study import protocol

    full = fill_defaults(protocol.apply(copy.deepcopy(cfg)))  # the protocol's values where the config sets none
    return StudyConfig(
        tasks=tuple(full["tasks"]),
        methods=tuple(full["methods"]),
        seeds=tuple(int(s) for s in full["seeds"]),
        shots=tuple(shot_counts(full)) if shot_axis(full) else int(full["shots"]),
        protocol=full["protocol"],
        fewshot_policy=full["fewshot_policy"],
        preflight=bool(full["preflight"]),
        mode=full["mode"],
        stack_seeds=bool(full["stack_seeds"]),
        model=ModelSettings(**full["model"]),
        train=TrainConfig.from_dict(full["train"]),
        train_options=dict(full["train"]),
        method_options=copy.deepcopy(full["method_options"]),
        elevater=ElevaterSettings(**full["elevater"]),
        device=full["device"],
        data_dir=full["data_dir"],
        results_dir=full["results_dir"],
        cache_dir=full["cache_dir"],
        similarity=SimilaritySettings(**full["similarity"]),
        analysis=AnalysisSettings(**full["analysis"]),
        predictors=PredictorSettings(**full["predictors"]),
        multitask=MultitaskSettings(**full["multitask"]),
        table1=Table1Settings(**full["table1"]),
        budget=BudgetSettings(**full["budget"]),
        config=full,
    )

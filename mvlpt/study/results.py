"""Result files: one small JSON per run and target, written atomically; every table is built from these.

This module is the only one that writes, reads, finds and validates result files. The layout
(``{results_dir}/{method}/{source}__{target}/seed{seed}.json``, baseline: source == target) and the
record schema with its version are :mod:`mvlpt.study.layout`'s (:data:`~mvlpt.study.layout.RESULT`,
:func:`~mvlpt.study.layout.parse_result_path`) and :mod:`mvlpt.study.vocabulary`'s (:func:`~mvlpt.study.vocabulary.check_record`). Every record is checked
when it is written and again when it is read: a NaN metric, a percentage where a fraction belongs,
a wrong type or a misplaced file ends in one sentence.

A set of results is also checked as a whole (:func:`check_settings`): the seeds of one cell are
averaged only when they were made with one setting, and a cell's gain is taken only over a baseline
of the same setting.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from mvlpt.errors import MvlptError
from mvlpt.io import write_json
from mvlpt.study import layout, vocabulary

log = logging.getLogger(__name__)

Found = tuple[Path, dict]  # a result file and its (validated) record


def write_result(result: dict, path: str | os.PathLike) -> None:
    """Write one run's result for one target, after checking it against the record schema.

    The place is the caller's choice (``mvlpt train --output``); readers of a results folder check that
    each file sits where the layout says (:func:`read_result`)."""
    rec = {"format": vocabulary.RESULT_FORMAT, **result}
    vocabulary.check_record(rec)
    write_json(rec, path)


def read_result(path: str | os.PathLike) -> dict:
    """One result file's record, valid against the schema and the place it was found at."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        raise MvlptError(f"result file {path} does not exist.") from None
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON, bad UTF-8, a number too long
        raise MvlptError(f"result file {path} cannot be read ({str(e)[:200]}); delete it and rerun its training job.") from None
    return vocabulary.check_record(rec, path)


def find_result_files(
    root: str | os.PathLike,
    methods: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[Path]:
    """Result files under ``root`` laid out as :data:`mvlpt.study.layout.RESULT` says, in a stable order.

    ``methods``/``tasks``/``seeds`` restrict the selection (both source and target must be in
    ``tasks``). Other files and folders under ``root`` (tables, figures, ...) are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise MvlptError(f"results folder {root} does not exist; run the study first or pass the right --results-dir.")
    methods_set = set(methods) if methods is not None else None
    tasks_set = set(tasks) if tasks is not None else None
    seeds_set = {int(s) for s in seeds} if seeds is not None else None
    out = []
    for path in sorted(root.glob(layout.RESULT_GLOB)):
        placed = layout.parse_result_path(path)
        if placed is None or not path.is_file():
            continue
        method, source, target, seed = placed
        if (
            (methods_set is not None and method not in methods_set)
            or (tasks_set is not None and (source not in tasks_set or target not in tasks_set))
            or (seeds_set is not None and seed not in seeds_set)
        ):
            continue
        out.append(path)
    return out


def read_results(
    root: str | os.PathLike,
    methods: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[Found]:
    """Every selected result file under ``root`` (see :func:`find_result_files`) with its record."""
    return [(p, read_result(p)) for p in find_result_files(root, methods, tasks, seeds)]


# --------------------------------------------------------------------------------------------------
# One setting per cell, and per gain
# --------------------------------------------------------------------------------------------------
# The seeds of a cell must agree on every field of study.SETTING_FIELDS. Their config hashes cannot
# be compared (a config hash covers the seed), so a setting is what the record states about it.
# A cell and its baseline must agree on the same fields but the mode (single vs joint/sequential).
GAIN_SETTING_FIELDS = tuple(f for f in vocabulary.SETTING_FIELDS if f != "mode")


def setting_of(rec: dict, fields: Sequence[str]) -> tuple:
    """What ``rec`` states of ``fields``, comparable between records."""
    return tuple(json.dumps(rec.get(f), sort_keys=True) for f in fields)


def differing_fields(a: dict, b: dict, fields: Sequence[str]) -> str:
    """``"shots 5 vs 10, epochs 5 vs 50"``: the fields of ``fields`` where ``a`` and ``b`` differ."""
    return ", ".join(
        f"{f} {a.get(f)!r} vs {b.get(f)!r}"
        for f in fields
        if json.dumps(a.get(f), sort_keys=True) != json.dumps(b.get(f), sort_keys=True)
    )


def settings_problems(found: Iterable[Found]) -> list[str]:
    """Sentences, one per cell whose seeds, or whose baseline, were made with another setting."""
    cells: dict[tuple, list[Found]] = {}
    for path, rec in found:
        cells.setdefault((rec["method"], rec["source"], rec["target"]), []).append((path, rec))
    problems = []
    for (method, source, target), members in cells.items():
        first_path, first = members[0]
        for path, rec in members[1:]:
            if setting_of(rec, vocabulary.SETTING_FIELDS) != setting_of(first, vocabulary.SETTING_FIELDS):
                problems.append(
                    f"the seeds of {method} {source}->{target} were made with different settings "
                    f"({differing_fields(first, rec, vocabulary.SETTING_FIELDS)}: {first_path} and {path})"
                )
                break
    for (method, source, target), members in cells.items():
        base = cells.get((method, target, target))
        if source == target or base is None:
            continue
        (path, rec), (base_path, base_rec) = members[0], base[0]
        if setting_of(rec, GAIN_SETTING_FIELDS) != setting_of(base_rec, GAIN_SETTING_FIELDS):
            problems.append(
                f"{method} {source}->{target} and its baseline {target}->{target} were made with different settings "
                f"({differing_fields(base_rec, rec, GAIN_SETTING_FIELDS)}: {base_path} and {path}), so they make no gain"
            )
    return problems


def check_splits(found: Iterable[Found]) -> None:
    """A gain pairs a run with the baseline of the same seed (:func:`mvlpt.analysis.tables.pair_table`): both must
    have used one few-shot split of the target, as their records say (``splits``: task -> split hash);
    else one sentence naming the two files. Records without ``splits`` (older mvlpt) are not compared."""
    base: dict[tuple, Found] = {}
    found = list(found)
    for path, rec in found:
        if rec["source"] == rec["target"]:
            base[(rec["method"], rec["target"], rec["seed"])] = (path, rec)
    for path, rec in found:
        hit = base.get((rec["method"], rec["target"], rec["seed"]))
        if rec["source"] == rec["target"] or hit is None or rec.get("joint_fewshot") == "union":
            continue  # (train option joint_fewshot: union samples a joint run's images anew, as the reference code)
        base_path, base_rec = hit
        mine, theirs = (rec.get("splits") or {}).get(rec["target"]), (base_rec.get("splits") or {}).get(rec["target"])
        if mine is not None and theirs is not None and mine != theirs:
            raise MvlptError(
                f"{rec['method']} {rec['source']}->{rec['target']} seed {rec['seed']} ({path}) was trained on another "
                f"few-shot split of {rec['target']} than its baseline ({base_path}: split {theirs[:12]}, this run: "
                f"{mine[:12]}), so their difference is no gain; rerun the one whose split file is not the study's."
            )


def protocol_of(rec: dict) -> str:
    """The named protocol a result was made under (mvlpt.study.protocol); older records: ``corrected``."""
    return rec.get("protocol") or "corrected"


def check_protocols(found: Sequence[Found]) -> None:
    """Refuse, in one sentence, results of two protocols (mvlpt.study.protocol): their differences would come
    from the protocol, not from transfer. Never allowed mixed."""
    by: dict[str, list[str]] = {}
    for path, rec in found:
        by.setdefault(protocol_of(rec), []).append(str(path))
    if len(by) > 1:
        parts = [f"{len(paths)} under {name} (e.g. {paths[0]})" for name, paths in sorted(by.items())]
        raise MvlptError(
            f"the results mix protocols, {' and '.join(parts)}; tables of one study take one protocol's results: "
            f"give each protocol its own results_dir."
        )


def check_settings(found: Sequence[Found], *, allow_mixed: bool = False) -> None:
    """Refuse (one sentence, the first problem) a set of results that mixes settings within a cell or
    between a cell and its baseline; with ``allow_mixed`` log each problem and go on."""
    refuse_mixed_settings(settings_problems(found), allow_mixed=allow_mixed)


def refuse_mixed_settings(problems: Sequence[str], *, allow_mixed: bool = False) -> None:
    """The first of ``problems`` (clauses) as one sentence (:class:`MvlptError`); with ``allow_mixed``
    each is logged as a warning instead."""
    if not problems:
        return
    if allow_mixed:
        for p in problems:
            log.warning("%s; averaged anyway (mixed settings allowed)", p)
        return
    more = f" (and {len(problems) - 1} more such cells)" if len(problems) > 1 else ""
    raise MvlptError(
        f"{problems[0]}{more}; remove the results of the other setting, or pass --allow-mixed-settings to average them anyway."
    )

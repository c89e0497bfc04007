"""Map a data source's class names onto ELEVATER's class order, by name.

A mirror or a torchvision data set numbers its classes its own way (alphabetically, by folder, by
an upstream id). Labels are therefore mapped through class *names*: both sides are normalised
(:func:`normalise`), ELEVATER's synonyms and a per-route alias table are consulted, and every
source class must find exactly one ELEVATER class. Anything else is an error naming the classes
that did not match; positions are never guessed. A route may declare ``"label_map": "position"``
in the routes table where the order is known to be ELEVATER's and the names are codes (country211
folder names are ISO codes, GTSRB and PCam have no names at all).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np

from mvlpt.errors import MvlptError


def normalise(name: str) -> str:
    """Lower-case, ASCII-folded, ``_``/``-``/``/`` as spaces, other punctuation dropped, spaces collapsed."""
    s = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    s = s.lower().replace("_", " ").replace("-", " ").replace("/", " ")
    s = re.sub(r"[^a-z0-9 ]+", "", s)
    return re.sub(r"\s+", " ", s).strip()


def map_by_name(
    source: Sequence[str],
    target: Sequence[str],
    *,
    synonyms: Sequence[Sequence[str]] | None = None,
    aliases: Mapping[str, str] | None = None,
    what: str = "source",
    task: str = "",
) -> np.ndarray:
    """Return ``m`` with ``m[source_index] = target_index`` for every source class.

    ``aliases`` maps source names to target names (both compared normalised). Raises
    :class:`MvlptError` when a source class matches no target class, or two match the same one.
    """
    lookup: dict[str, int] = {}
    for j, name in enumerate(target):
        for n in [name, *((synonyms[j] if synonyms else ()) or ())]:
            key = normalise(n)
            if lookup.get(key, j) != j:
                raise MvlptError(
                    f"task {task}: class names {target[lookup[key]]!r} and {name!r} normalise alike; "
                    f"the label map cannot be built by name."
                )
            lookup[key] = j
    alias = {normalise(k): normalise(v) for k, v in (aliases or {}).items()}
    mapping = np.full(len(source), -1, dtype=np.int64)
    missing: list[str] = []
    for i, name in enumerate(source):
        key = normalise(name)
        j = lookup.get(key)
        if j is None and key in alias:
            j = lookup.get(alias[key])
        if j is None:
            missing.append(str(name))
        else:
            mapping[i] = j
    if missing:
        shown = ", ".join(repr(m) for m in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise MvlptError(
            f"task {task}: {len(missing)} class name(s) of the {what} match no ELEVATER class ({shown}); "
            f"the labels cannot be mapped by name, so add aliases for them in mvlpt/tasks/data/elevater_routes.json "
            f"or use another route."
        )
    used, dup = set(), []
    for i, j in enumerate(mapping):
        if int(j) in used:
            dup.append(str(source[i]))
        used.add(int(j))
    if dup:
        raise MvlptError(
            f"task {task}: several {what} classes map to one ELEVATER class ({', '.join(map(repr, dup))}); "
            f"fix the aliases in mvlpt/tasks/data/elevater_routes.json."
        )
    return mapping


def check_same_order(
    mapping: np.ndarray, source: Sequence[str], target: Sequence[str], *, what: str = "source", task: str = ""
) -> None:
    """For a source whose label ids are known to be ELEVATER's order (e.g. TFDS oxford_flowers102: the
    official ids): the map built by name must then be the identity; a class whose name and position
    disagree is an error naming it (the names or the aliases are wrong, or the source is another one)."""
    if len(mapping) == len(target) and np.array_equal(mapping, np.arange(len(target))):
        return
    bad = [(i, str(source[i]), target[int(j)]) for i, j in enumerate(mapping) if int(j) != i]
    if len(mapping) != len(target):
        raise MvlptError(
            f"task {task}: the {what} has {len(mapping)} classes but ELEVATER has {len(target)}, "
            f"although its label ids should be ELEVATER's; fetch the task again or use another route."
        )
    i, name, matched = bad[0]
    raise MvlptError(
        f"task {task}: the {what} names label {i} {name!r}, which matches ELEVATER's {matched!r} at "
        f"position {target.index(matched)}, although its label ids should be ELEVATER's order "
        f"({len(bad)} classes disagree); the names or aliases do not belong to this data: fetch the task "
        f"again or use another route."
    )


def map_by_position(n_source: int, n_target: int, *, what: str = "source", task: str = "") -> np.ndarray:
    if n_source != n_target:
        raise MvlptError(
            f"task {task}: the {what} has {n_source} classes but ELEVATER has {n_target}; its labels cannot be taken by position."
        )
    return np.arange(n_target, dtype=np.int64)


def apply_mapping(labels: np.ndarray, mapping: np.ndarray, num_classes: int, multilabel: bool) -> np.ndarray:
    """Relabel ``labels`` (int ``(N,)`` or multi-hot ``(N, C_src)``) into ELEVATER's order."""
    labels = np.asarray(labels)
    if multilabel:
        if labels.ndim != 2:
            raise ValueError("multi-label labels must be (N, C)")
        out = np.zeros((labels.shape[0], num_classes), dtype=np.uint8)
        src = labels.astype(bool)
        out[:, mapping] = src
        return out
    return mapping[labels.astype(np.int64)]

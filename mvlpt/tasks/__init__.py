"""Tasks: registry, the offline synthetic suite, the ELEVATER suite and few-shot splits.

The suites import the registry and register their tasks when they are imported; the registry imports
no suite. This package declares the built-in suites to the registry, which imports them at the first
lookup (:func:`get_task`, :func:`list_tasks`), so ``import mvlpt.tasks`` stays cheap.
"""

from mvlpt.tasks.registry import ArraySplit, Task, TaskSplit, add_suite_loader, get_task, list_tasks, register


def _load_builtin_suites() -> None:
    from mvlpt.tasks import (  # noqa: F401  (importing a suite registers its tasks)
        coop,  # noqa: F401  (the CoOp data sets that are not ELEVATER tasks: the paper's Table 1)
        designed,  # noqa: F401  (the designed world, docs/groundtruth.md)
        elevater,
        synthetic,
    )


add_suite_loader(_load_builtin_suites)

__all__ = ["ArraySplit", "Task", "TaskSplit", "add_suite_loader", "get_task", "list_tasks", "register"]

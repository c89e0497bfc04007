"""Tasks: registry, the offline synthetic suite, the ELEVATER suite and few-shot splits."""

from .registry import ArraySplit, Task, TaskSplit, get_task, list_tasks, register

__all__ = ["ArraySplit", "Task", "TaskSplit", "get_task", "list_tasks", "register"]

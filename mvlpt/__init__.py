"""mvlpt: the task-transferability study of Multitask Vision-Language Prompt Tuning, rerunnable."""

__version__ = "0.1.0"

"""The one exception type for errors a user can cause.

Anything raised as :class:`MvlptError` is printed by the CLI as one sentence (no traceback) and
ends the process with a non-zero exit status. Its message must say what is wrong and what to do.
"""


class MvlptError(Exception):
    """A user-facing error: bad config, unknown task, missing data, no weights offline, NaN loss."""

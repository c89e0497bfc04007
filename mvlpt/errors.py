"""The one exception type for errors a user can cause.

Anything raised as :class:`MvlptError` is printed by the CLI as one sentence (no traceback) and
ends the process with a non-zero exit status. Its message must say what is wrong and what to do.
"""


class MvlptError(Exception):
    """A user-facing error: bad config, unknown task, missing data, no weights offline, NaN loss."""


def one_line(message: str) -> str:
    """``message`` as the one line the CLI prints: a newline, tab or other control character that a
    path or name in it carries is shown escaped (``\\n``), so the sentence stays one line."""
    text = str(message).strip()
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)

"""The one exception type that reaches the user as a one-line message instead of a traceback."""


class DAError(Exception):
    """A problem with the user's input or environment, worded as what was wrong and how to fix it.

    The CLI prints ``str(error)`` on one line to stderr and exits non-zero; library users can catch it.
    """


class Interrupted(DAError):
    """A run stopped by SIGTERM or Ctrl-C after saving a checkpoint: whatever drives it should stop too."""

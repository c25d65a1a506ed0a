"""Errors that reach the user as one line (no traceback) and a non-zero exit status."""


class UserError(Exception):
    """A problem with the user's input: a file, a name, a config value.

    The ``rvar`` command prints ``rvar: error: <message>`` and exits with status 2; the message must say
    what is wrong and, where possible, what to do next.
    """


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, of the wrong kind or of mismatched shapes."""


class ImageError(UserError):
    """An image that cannot be read (corrupt, truncated, not an image)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised by the handler :func:`rvar.cli.main` installs for its own commands; a KeyboardInterrupt
    so that every clean-up written for Ctrl-C (temp files, "stopped after N images") runs for it too."""

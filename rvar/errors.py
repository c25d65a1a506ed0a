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

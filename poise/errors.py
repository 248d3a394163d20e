"""The one error type for mistakes a user can fix (a bad key, value, path or file): ``poise`` commands print it
as one line that says what to do. Every other exception is a bug and keeps its traceback.

It subclasses ``ValueError`` so that callers of the library that catch ``ValueError`` keep working.
"""


class PoiseError(ValueError):
    """A user-fixable problem; the message names the key, file or option and says what to do."""

"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class BabyganError(Exception):
    """A problem the user can fix (a bad file, a missing model, no face...).

    The message is shown as is, on one line, so it should name the file and the
    problem, e.g. ``"photo.jpg: no face found"``.
    """


class ModelFileError(BabyganError):
    """A model file is missing, corrupt, of the wrong kind, or cannot be fetched."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none
    (for wrapping a library's error into our one-line messages)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

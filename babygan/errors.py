"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class BabyganError(Exception):
    """A problem the user can fix (a bad file, a missing model, no face...).

    The message is shown as is, on one line, so it should name the file and the
    problem, e.g. ``"photo.jpg: no face found"``.
    """


class ModelFileError(BabyganError):
    """A model file is missing, corrupt, of the wrong kind, or cannot be fetched."""

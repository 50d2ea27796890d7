"""The one exception type that means "the user asked for something wrong"."""


class UserError(Exception):
    """A bad flag, config, path or input that the user can fix.

    The CLI prints its message (no stack trace) and exits with status 2.
    """

"""Errors that the command line reports as one line with exit status 2."""


class UserError(Exception):
    """Bad input from the user: a config value, a file, an address. No traceback is shown."""


class StudyFailed(RuntimeError):
    """A study ran but produced nothing usable (every trial failed); exit status 1."""


class TrialFailed(RuntimeError):
    """A trial could not produce trustworthy metrics (diverged, bench gone, ...)."""

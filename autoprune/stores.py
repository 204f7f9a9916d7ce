"""Opening the stores a study writes to (MLflow, Optuna) when several studies start at once.

A new SQLite store is created by its first user: MLflow runs its schema migrations, Optuna
creates its tables, and the first study creates the experiment. Two studies starting together
against the same new file would both do so and one would fail. `creating` serialises that
step between processes, with a lock on the store's folder (no lock file is left behind).
Server and database URIs need no lock: their servers serialise it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import optuna

SQLITE = "sqlite:///"


@contextlib.contextmanager
def creating(uri: str) -> Iterator[None]:
    """Hold an exclusive lock while a SQLite store at `uri` is opened (and maybe created)."""
    if not uri.startswith(SQLITE):
        yield
        return
    folder = Path(uri[len(SQLITE):]).expanduser().resolve().parent
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """The Optuna storage at `url`, its tables created by one process at a time."""
    with creating(url):
        return optuna.storages.RDBStorage(url)

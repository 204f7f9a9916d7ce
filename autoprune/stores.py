"""Opening the stores a study writes to (MLflow, Optuna) when several studies start at once.

A new SQLite store is created by its first user: MLflow runs its schema migrations, Optuna
creates its tables, and the first study creates the experiment. Two studies starting together
against the same new file would both do so and one would fail. `creating` serialises that
step between processes, with a lock on the store's folder (no lock file is left behind).
Server and database URIs need no lock: their servers serialise it.

An Optuna SQLite store is switched to SQLite's write-ahead log (WAL): Optuna writes every
suggested parameter in its own transaction, and in the default rollback-journal mode each
of those commits costs several syncs, all of it on the path from one trial to the next.
The mode stays with the file (its readers, such as optuna-dashboard, need nothing); the
`-wal` and `-shm` files beside it exist while it is open.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
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


def write_ahead(uri: str) -> None:
    """Put the SQLite database at `uri` (created if missing) in WAL mode. A file that cannot
    be (a filesystem without shared memory, another process holding it) keeps its mode: WAL
    only makes commits cheaper."""
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    try:
        connection = sqlite3.connect(Path(url.database).expanduser(), timeout=1.0)
    except sqlite3.Error:
        return  # Optuna reports an unusable path itself
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:
        pass
    finally:
        connection.close()


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """The Optuna storage at `url`, its tables created by one process at a time (a SQLite
    file in WAL mode, `write_ahead`)."""
    with creating(url):
        write_ahead(url)
        return optuna.storages.RDBStorage(url)

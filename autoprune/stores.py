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
`-wal` and `-shm` files beside it exist while it is open (a process killed outright leaves
them, with its last commits, for the next open).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import optuna


def sqlite_file(uri: str) -> Path | None:
    """The file of a SQLite database URL (its query options left out); None for any other
    database and for SQLite in memory."""
    from sqlalchemy.engine import make_url

    if not uri.startswith("sqlite"):  # a tracking URI may be a path or a server, not a URL
        return None
    url = make_url(uri)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser()


@contextlib.contextmanager
def creating(uri: str) -> Iterator[None]:
    """Hold an exclusive lock while a SQLite store at `uri` is opened (and maybe created)."""
    path = sqlite_file(uri)
    if path is None:
        yield
        return
    handle = os.open(path.resolve().parent, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def write_ahead(uri: str) -> None:
    """Put the SQLite database at `uri` (created if missing) in WAL mode. A file that cannot
    be (a filesystem without shared memory, another process holding it, a path Optuna will
    report itself) keeps its mode: WAL only makes commits cheaper."""
    path = sqlite_file(uri)
    if path is None:
        return
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=1.0)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:
        pass


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """The Optuna storage at `url`, its tables created by one process at a time (a SQLite
    file in WAL mode, `write_ahead`)."""
    with creating(url):
        write_ahead(url)
        return optuna.storages.RDBStorage(url)

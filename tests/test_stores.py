"""The study stores: an Optuna SQLite file opened in WAL mode, and left alone where it cannot be."""

import sqlite3

import optuna

from autoprune.stores import optuna_storage, write_ahead


def _mode(path) -> str:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        connection.close()


def test_optuna_store_is_in_wal_mode_and_keeps_the_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=optuna_storage(url), study_name="s",
                                directions=["maximize", "minimize"])
    trial = study.ask()
    trial.suggest_float("ratio", 0.0, 0.9)
    study.tell(trial, [0.9, 1.5])
    assert _mode(tmp_path / "optuna.db") == "wal"
    again = optuna.load_study(study_name="s", storage=optuna_storage(url))
    assert [t.values for t in again.trials] == [[0.9, 1.5]]
    assert again.trials[0].params.keys() == {"ratio"}


def test_a_url_with_options_names_the_file_without_them(tmp_path):
    write_ahead(f"sqlite:///{tmp_path / 'store.db'}?timeout=5")
    assert [p.name for p in tmp_path.iterdir()] == ["store.db"]
    assert _mode(tmp_path / "store.db") == "wal"


def test_memory_and_server_urls_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite://", "sqlite:///:memory:", "postgresql://user@localhost/db"):
        write_ahead(url)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_not_created(tmp_path):
    write_ahead(f"sqlite:///{tmp_path / 'missing' / 'optuna.db'}")
    assert not (tmp_path / "missing").exists()


def test_a_store_held_by_another_writer_keeps_its_mode(tmp_path):
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        write_ahead(f"sqlite:///{path}")  # gives up after its short timeout, without raising
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _mode(path) == "delete"

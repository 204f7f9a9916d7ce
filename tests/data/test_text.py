"""Byte-level text for language modelling: the standard library's source, or a user's files,
split by file with a stable hash, read as windows of token ids."""

from __future__ import annotations

import re

import pytest
import torch

from autoprune.data import load_data
from autoprune.data.text import stdlib_folder
from autoprune.errors import UserError
from tests.conftest import make_settings


def _text(*overrides: str):
    return make_settings("task=language_model", *overrides).data


def test_the_standard_library_is_split_by_file_into_windows():
    cfg = _text()
    data = load_data(cfg)
    train, val, test = data.sizes()
    assert train > 10 * val > 0 and test > 0
    window = data.train[0]
    assert window.dtype == torch.long and window.shape == (cfg.context + 1,)
    assert 0 <= int(window.min()) and int(window.max()) < 256
    # Consecutive windows overlap by one byte: the last target is the next window's first input.
    assert data.train[0][-1] == data.train[1][0]
    total = sum(p.stat().st_size for p in stdlib_folder().glob("*.py"))
    assert (train + val + test) * cfg.context == pytest.approx(total, rel=0.01)


def test_no_file_is_in_two_splits_and_the_split_is_stable(tmp_path):
    for index in range(40):
        (tmp_path / f"f{index:02d}.txt").write_text(f"file {index:02d} " * 50)
    cfg = _text(f"data.path={tmp_path}", "data.pattern=*.txt", "data.val_fraction=0.2",
                "data.test_fraction=0.2", "data.context=8")
    data = load_data(cfg)

    def files(split: torch.utils.data.Dataset) -> set[str]:
        text = bytes(split.data.tolist()).decode()
        return set(re.findall(r"file (\d\d)", text))

    train, val, test = files(data.train), files(data.val), files(data.test)
    assert train and val and test
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == 40
    # Adding a file leaves every other file where it was.
    (tmp_path / "f99.txt").write_text("file 99 " * 50)
    again = load_data(cfg)
    assert files(again.val) - {"99"} == val and files(again.test) - {"99"} == test


def test_one_file_is_cut_into_pieces(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes(bytes(range(256)) * 2000)  # 512 KB: 32 pieces
    data = load_data(_text(f"data.path={path}"))
    assert all(size > 0 for size in data.sizes())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("data.path=/nonexistent/folder",), "does not exist"),
        (("data.path={tmp}", "data.pattern=*.nothing"), "holds no file matching"),
        (("data.path={tmp}/one.txt", "data.context=500000"), "less than one window"),
    ],
)
def test_bad_text_is_a_user_error(tmp_path, overrides, message):
    (tmp_path / "one.txt").write_text("print('hello')\n" * 100)
    cfg = _text(*(o.format(tmp=tmp_path) for o in overrides))
    with pytest.raises(UserError, match=message):
        load_data(cfg)

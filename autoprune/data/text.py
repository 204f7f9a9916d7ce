"""Text as bytes for language modelling: the Python standard library's own source (on every
machine that runs Python), or a user's files (`data.path`, a folder or one file).

Byte-level: the vocabulary is the 256 byte values, so any text works without a tokenizer.
Files are assigned to train/val/test by a stable hash of their path relative to the folder,
so no file is in two splits and the assignment never changes with the file list. One file
alone is cut into 16 KiB pieces, which are assigned the same way. A split is the
concatenation of its files; an item is a window of `context + 1` bytes (inputs and the next
byte of each), windows taken at a stride of `context`.
"""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import torch
from torch.utils.data import Dataset

from autoprune.config import DataConfig
from autoprune.data.splits import DataSplits
from autoprune.errors import UserError

PIECE = 16 * 1024  # bytes per unit of a single file's split
SKIP = {"site-packages", "dist-packages", "__pycache__"}


class ByteWindows(Dataset):
    """Windows of `context + 1` bytes over one split's text, as int64 token ids."""

    def __init__(self, data: torch.Tensor, context: int) -> None:
        self.data = data
        self.context = context

    def __len__(self) -> int:
        return max((len(self.data) - 1) // self.context, 0)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.context
        return self.data[start:start + self.context + 1].long()


def stdlib_folder() -> Path:
    """The folder holding the standard library's .py files."""
    return Path(sysconfig.get_paths()["stdlib"])


def _units(cfg: DataConfig) -> list[tuple[str, bytes]]:
    """(name, bytes) of every file (or piece of a single file), sorted by name."""
    root = Path(cfg.path).expanduser() if cfg.path else stdlib_folder()
    if not root.exists():
        raise UserError(f"data.path {cfg.path!r} does not exist")
    if root.is_file():
        text = root.read_bytes()
        return [(f"{root.name}@{start}", text[start:start + PIECE])
                for start in range(0, len(text), PIECE)]
    files = sorted(p for p in root.glob(cfg.pattern)
                   if p.is_file() and not SKIP & set(p.relative_to(root).parts))
    if not files:
        raise UserError(f"data.path {root} holds no file matching data.pattern "
                        f"{cfg.pattern!r}")
    return [(p.relative_to(root).as_posix(), p.read_bytes()) for p in files]


def _split_of(name: str, cfg: DataConfig) -> str:
    bucket = int(hashlib.sha256(f"{cfg.split_seed}:{name}".encode()).hexdigest()[:8], 16)
    position = bucket / 0xFFFFFFFF
    if position < cfg.test_fraction:
        return "test"
    if position < cfg.test_fraction + cfg.val_fraction:
        return "val"
    return "train"


def load_text(cfg: DataConfig) -> DataSplits:
    """The text's splits as byte windows; raises UserError when a split is empty."""
    parts: dict[str, list[bytes]] = {"train": [], "val": [], "test": []}
    for name, content in _units(cfg):
        parts[_split_of(name, cfg)].append(content)
    joined = {split: b"\n".join(chunks) for split, chunks in parts.items()}
    sizes = {split: len(text) for split, text in joined.items()}
    for split, size in sizes.items():
        if size <= cfg.context + 1:
            raise UserError(f"data=text: the {split} split holds {size} bytes, less than one "
                            f"window of data.context + 1 = {cfg.context + 1}; give more text "
                            "or larger data.val_fraction / data.test_fraction")
    windows = {split: ByteWindows(torch.frombuffer(bytearray(text), dtype=torch.uint8),
                                  cfg.context) for split, text in joined.items()}
    digest = hashlib.sha256(joined["train"]).hexdigest()
    return DataSplits(windows["train"], windows["val"], windows["test"], digest)

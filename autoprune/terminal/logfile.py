"""A command's output kept in its run folder (`<command>.log`) as well as shown.

What a command prints goes to the terminal as before and to the log file too, except the
status block a terminal redraws in place (see `live.py`): the lines a redraw erases never
reach the file, so the log holds the lines that stay, as a non-terminal would show them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from autoprune.terminal.live import UP

KEEP = 64  # lines held back from the file in case a redraw erases them


class Tee:
    """A text stream writing to `stream` and, minus erased status lines, to `log`."""

    def __init__(self, stream: TextIO, log: TextIO, name: str = "stdout") -> None:
        self.stream, self.log, self.name = stream, log, name
        self.held: list[str] = []  # complete lines not yet in the file
        self.partial = ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        erased = text.count(UP)
        if erased:  # a redraw: the last `erased` lines were status
            del self.held[max(0, len(self.held) - erased):]
            text = text[text.rfind(UP) + len(UP):].replace("\x1b[2K", "").lstrip("\r")
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        self.held.extend(lines)
        if len(self.held) > KEEP:
            self._flush_lines(len(self.held) - KEEP)
        return len(text)

    def _flush_lines(self, count: int) -> None:
        self.log.write("".join(line + "\n" for line in self.held[:count]))
        del self.held[:count]

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        """Write what is held (a last status, never erased, stays) and the partial line."""
        self._flush_lines(len(self.held))
        if self.partial:
            self.log.write(self.partial + "\n")
        self.log.flush()

    def __reduce__(self) -> tuple:
        # Pickled (Ray Tune pickles what holds the console) as the process's own stream, as
        # cloudpickle does for sys.stdout itself: the log file stays with this process.
        return getattr, (sys, self.name)

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def __getattr__(self, name: str):  # noqa: ANN204 - the wrapped stream's other attributes
        return getattr(self.stream, name)


@contextlib.contextmanager
def logged(path: Path) -> Iterator[None]:
    """Within this block, stdout and stderr also go to the file `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        out, err = Tee(sys.stdout, log, "stdout"), Tee(sys.stderr, log, "stderr")
        sys.stdout, sys.stderr = out, err
        try:
            yield
        finally:
            sys.stdout, sys.stderr = out.stream, err.stream
            out.close()
            err.close()

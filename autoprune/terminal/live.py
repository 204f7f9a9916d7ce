"""Lines that stay and a status that changes: how long work shows its progress.

On a terminal the status (one line per running job, and a summary) is redrawn in place below
the lines printed so far; elsewhere (a log file, CI) it is printed as plain lines at most
every `interval_s` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

CLEAR_LINE = "\x1b[2K"
UP = "\x1b[1A"


def duration(seconds: float) -> str:
    """A short human duration: 45s, 3m05s, 1h12m."""
    if seconds != seconds or seconds < 0:  # NaN or negative
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Live:
    """A stream with permanent lines above a status block."""

    def __init__(self, stream: TextIO | None = None, interval_s: float = 30.0,
                 refresh_s: float = 0.5) -> None:
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s
        self.refresh_s = refresh_s
        self.shown = 0  # status lines currently on screen (terminal only)
        self.last = time.monotonic()

    def line(self, text: str) -> None:
        """Print a line that stays; the status is drawn again below it."""
        self._erase()
        print(text, file=self.stream, flush=True)

    def status(self, lines: list[str], force: bool = False) -> None:
        """Show the status: redrawn in place (throttled, unless `force`) on a terminal, else
        printed as plain lines every `interval_s`."""
        now = time.monotonic()
        wait = self.refresh_s if self.tty else self.interval_s
        if not (force and self.tty) and now - self.last < wait:
            return
        self.last = now
        if not self.tty:
            for text in lines:
                print(text, file=self.stream, flush=True)
            return
        self._erase()
        for text in lines:
            print(text, file=self.stream)
        self.shown = len(lines)
        self.stream.flush()

    def close(self) -> None:
        """Take the status off the screen."""
        self._erase()

    def _erase(self) -> None:
        if self.tty and self.shown:
            self.stream.write((UP + CLEAR_LINE) * self.shown + "\r")
            self.stream.flush()
            self.shown = 0


class Meter:
    """Progress of one job in steps (base training): step, loss, ETA."""

    def __init__(self, what: str, total: int, live: Live | None = None) -> None:
        self.what = what
        self.total = total
        self.live = live or Live()
        self.started = time.monotonic()

        self.step, self.loss = 0, float("nan")

    def __call__(self, step: int, loss: float) -> None:
        self.step, self.loss = step, loss
        elapsed = time.monotonic() - self.started
        eta = elapsed / step * (self.total - step) if step else float("nan")
        self.live.status([f"{self.what}: step {step}/{self.total}, loss {loss:.4f}, "
                          f"{duration(elapsed)} elapsed, ETA {duration(eta)}"])

    def done(self) -> None:
        """Replace the status by a line that stays (when any step ran)."""
        self.live.close()
        if self.step:
            self.live.line(f"{self.what}: {self.step} steps in "
                           f"{duration(time.monotonic() - self.started)}, last loss "
                           f"{self.loss:.4f}")

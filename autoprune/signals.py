"""SIGTERM handled like Ctrl-C: a study stopped by a scheduler or `kill` shuts down cleanly.

Ctrl-C (SIGINT) already stops Ray Tune gracefully and then the study: in-flight trials are
marked interrupted, the partial front is logged and Ray is stopped. SIGTERM (a cluster
scheduler, `kill`, `timeout`) takes the same path. `ray.init` installs a SIGTERM handler of
its own (exit at once), so `stop_on_sigterm` is called again once Ray has started.
"""

from __future__ import annotations

import signal
from types import FrameType

_received: list[str] = []


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _received.append("SIGTERM")
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        # A background job (`cmd &` in a script) starts with Ctrl-C ignored: SIGTERM must
        # still stop it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.raise_signal(signal.SIGINT)


def stop_on_sigterm() -> None:
    """From now on, SIGTERM stops this process as Ctrl-C would."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def received_signal() -> str:
    """The signal that interrupted this process: SIGTERM if one came, else SIGINT."""
    return _received[0] if _received else "SIGINT"

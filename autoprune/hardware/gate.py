"""The core gate: training and latency measurement on one node never overlap.

`CoreGate` is a readers-writer lock over a node's cores: training steps hold it shared, a
measurement holds it exclusively (and new training waits while one is pending). The module
imports neither torch nor the rest of autoprune: the gate's actor process stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import ray


@ray.remote(num_cpus=0)
class CoreGate:
    """Readers-writer lock: many trainers, or one measurement, never both.

    Holders are named, so that a holder which died cannot block the others for ever: the
    driver drops a failed trial's holds (`drop`), and a restarted bench starts a new
    generation (`new_bench`), which voids whatever its earlier incarnation held or waited for.
    """

    def __init__(self) -> None:
        self._trainers: dict[str, int] = {}
        self._dropped: set[str] = set()
        self._measuring = False
        self._pending = 0
        self._generation = 0
        self._changed = asyncio.Condition()

    async def enter_train(self, owner: str = "") -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._measuring and self._pending == 0)
            if owner not in self._dropped:
                self._trainers[owner] = self._trainers.get(owner, 0) + 1

    async def exit_train(self, owner: str = "") -> None:
        async with self._changed:
            if self._trainers.get(owner, 0) > 0:
                self._trainers[owner] -= 1
            self._changed.notify_all()

    async def drop(self, owner: str) -> None:
        """`owner` (a trial whose worker died) holds nothing from now on."""
        async with self._changed:
            self._dropped.add(owner)
            self._trainers.pop(owner, None)
            self._changed.notify_all()

    async def new_bench(self) -> int:
        """A bench (re)started: release what an earlier one held; returns its generation."""
        async with self._changed:
            self._generation += 1
            self._measuring = False
            self._changed.notify_all()
            return self._generation

    async def enter_measure(self, generation: int = 0) -> bool:
        """Wait until no trainer holds the gate, then hold it; False for a stale bench."""
        async with self._changed:
            self._pending += 1
            try:
                await self._changed.wait_for(
                    lambda: generation < self._generation
                    or (not any(self._trainers.values()) and not self._measuring))
            finally:
                self._pending -= 1
                self._changed.notify_all()
            if generation < self._generation:
                return False
            self._measuring = True
            return True

    async def exit_measure(self, generation: int = 0) -> None:
        async with self._changed:
            if generation == self._generation:
                self._measuring = False
            self._changed.notify_all()


class TrainingGuard:
    """Callable guard for `autoprune.training`: holds the gate shared around a training step.

    `owner` names the holder (the trial) so the driver can release it if its worker dies.
    """

    def __init__(self, gate: Any, owner: str = "") -> None:
        self.gate = gate
        self.owner = owner

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        ray.get(self.gate.enter_train.remote(self.owner))
        try:
            yield
        finally:
            ray.get(self.gate.exit_train.remote(self.owner))

"""What a study prints: progress while it runs, one line per finished trial, the front."""

from autoprune.terminal.live import Live, Meter, duration
from autoprune.terminal.progress import Progress
from autoprune.terminal.table import front_table

__all__ = ["Live", "Meter", "Progress", "duration", "front_table"]

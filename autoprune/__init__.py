"""autoprune: search hardware-aware pruning policies for PyTorch models."""

__version__ = "0.1.0"

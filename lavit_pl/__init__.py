"""LaVIT-PL: LaVIT (ICLR 2024) as a PyTorch Lightning experiment suite."""
__version__ = "0.1.0"

"""sdzero-mlx: SD-Zero (Self-Distillation Zero, arXiv 2604.12002) on MLX."""

__version__ = "0.1.0"

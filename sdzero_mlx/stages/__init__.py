"""The training stages, one module each, on the loop they share (loop.py)."""

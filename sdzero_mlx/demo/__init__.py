"""The built-in demo: two synthetic arithmetic tasks and a tiny base model for each, pretrained by a seeded script.

`app.TASKS` names the shipped mlx-lm model folders (made by `python -m sdzero_mlx.demo.pretrain OUT` with the
arguments in each folder's build_info.json, which also holds the measured numbers).
"""

from pathlib import Path

BASE_MODEL = Path(__file__).parent / "base_model"  # the chain task's model

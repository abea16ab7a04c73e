"""One rank of the runs in test_distributed.py, started by `mlx.launch`: distill, then SRT, into OUT.

Usage: python dist_worker.py RECIPE TUPLES OUT   (OUT/distill and OUT/srt; every rank gets the same arguments)
"""

import sys
from dataclasses import replace
from pathlib import Path

from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.stages.distill import run_distill
from sdzero_mlx.stages.srt import run_srt

recipe_path, tuples, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
recipe = load_recipe(recipe_path, [f"run.output_dir={out / 'distill'}"])
run_distill(recipe, out / "distill")
run_srt(replace(recipe, srt=replace(recipe.srt, tuples=str(tuples))), out / "srt")

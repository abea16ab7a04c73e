"""The arrays of a run directory (rundir.RunDir names the files): adapters in mlx-lm's format, and the
checkpoint that makes --resume exact.

RUN/
  adapters/           adapters.safetensors + adapter_config.json (mlx_lm.generate --adapter-path)
  checkpoint/         state.json, adapters/optimizer/teacher .safetensors of the last saved step

A checkpoint is written into checkpoint.tmp, fsynced and swapped in with renames (atomic.replace_dir),
so an interruption at any moment leaves either the previous or the new checkpoint, never a half one;
every other file goes through atomic.py too. Sampling seeds and
data positions are functions of (seed, step), so the step counter restores them.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, fields
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

from .atomic import DamagedFile, load_safetensors, read_json, replace_dir, save_safetensors, write_json
from .config import LoraConfig
from .rundir import ADAPTER_CONFIG, ADAPTER_WEIGHTS, CHECKPOINT, RunDir
from .types import TrainingState


def save_adapters(
    out_dir: Path, lora: dict[str, mx.array], config: LoraConfig, num_layers: int, model_path: str
) -> list[Path]:
    """Write mlx-lm's adapter format: what `mlx_lm.generate --adapter-path` and `load_adapters` read.

    `model` records the base model (as mlx-lm's own adapter_config.json does), so that loading the
    adapters on another model can warn. Returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_safetensors(out_dir / ADAPTER_WEIGHTS, lora)
    adapter_config = {
        "fine_tune_type": config.fine_tune_type,
        "num_layers": num_layers,
        "lora_parameters": config.mlx_lm_parameters(),
        "model": model_path,
    }
    write_json(out_dir / ADAPTER_CONFIG, adapter_config)
    return [out_dir / ADAPTER_WEIGHTS, out_dir / ADAPTER_CONFIG]


def save_checkpoint(
    run_dir: Path,
    state: TrainingState,
    lora: dict[str, mx.array],
    optimizer: optim.Optimizer,
    extra: dict[str, dict[str, mx.array]] | None = None,
) -> None:
    """Atomically replace RUN/checkpoint with the given state (extra: e.g. {"teacher": params})."""
    tmp = run_dir / f"{CHECKPOINT}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_safetensors(tmp / "lora.safetensors", lora)
    save_safetensors(tmp / "optimizer.safetensors", dict(tree_flatten(optimizer.state)))
    for name, arrays in (extra or {}).items():
        save_safetensors(tmp / f"{name}.safetensors", arrays)
    write_json(tmp / "state.json", asdict(state))
    replace_dir(tmp, run_dir / CHECKPOINT)


def load_checkpoint(run_dir: Path, optimizer: optim.Optimizer, extra_names: tuple[str, ...] = ()):
    """Returns (state, lora, extras) and restores the optimizer state in place."""
    path = RunDir(run_dir).resume_from()
    if path is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to resume from (expected {run_dir / CHECKPOINT}).")
    state = read_state(path / "state.json")
    fix = f"delete {path} to restart the run from its previous checkpoint (or from scratch)"
    lora = load_safetensors(path / "lora.safetensors", fix)
    optimizer.state = tree_unflatten(list(load_safetensors(path / "optimizer.safetensors", fix).items()))
    extras = {name: load_safetensors(path / f"{name}.safetensors", fix) for name in extra_names}
    return state, lora, extras


def read_state(path: Path) -> TrainingState:
    """A checkpoint's state.json, checked field by field: a damaged one is named, not a traceback."""
    fix = f"delete {path.parent} to restart from the previous checkpoint (or from scratch)"
    raw = read_json(path, fix)
    want = {f.name: f.type for f in fields(TrainingState)}
    if not isinstance(raw, dict) or set(raw) != set(want):
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise DamagedFile(f"{path} is damaged: expected the fields {sorted(want)}, found {got}; {fix}.")
    for name, value in raw.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (want[name] == "int" and not float(value).is_integer()) or value < 0:
            raise DamagedFile(f"{path} is damaged: {name} is {value!r}, not a count; {fix}.")
    return TrainingState(**{k: int(v) if want[k] == "int" else float(v) for k, v in raw.items()})

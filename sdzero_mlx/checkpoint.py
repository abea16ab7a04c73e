"""Run directories: adapters in mlx-lm's format, and the state that makes --resume exact.

RUN/
  recipe.yaml         the resolved recipe
  metrics.jsonl       one line per optimizer step
  adapters/           adapters.safetensors + adapter_config.json (mlx_lm.generate --adapter-path)
  checkpoint/         state.json, adapters/optimizer/teacher .safetensors of the last saved step

A checkpoint is written into checkpoint.tmp and swapped in with renames, so an interruption at
any moment leaves either the previous or the new checkpoint, never a half one. Sampling seeds and
data positions are functions of (seed, step), so the step counter restores them.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

from .config import LoraConfig

ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class TrainingState:
    step: int = 0  # optimizer steps completed
    generations: int = 0  # budget accounting (the paper's): sequences sampled
    sampled_tokens: int = 0
    trained_tokens: int = 0
    elapsed_s: float = 0.0


def write_json_atomic(path: Path, data) -> None:
    """Write JSON through a temporary file and a rename: a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def save_adapters(out_dir: Path, lora: dict[str, mx.array], config: LoraConfig, num_layers: int, model_path: str) -> None:
    """Write mlx-lm's adapter format: what `mlx_lm.generate --adapter-path` and `load_adapters` read."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out_dir / ADAPTER_WEIGHTS), lora)
    adapter_config = {
        "fine_tune_type": config.fine_tune_type,
        "num_layers": num_layers,
        "lora_parameters": config.mlx_lm_parameters(),
        "model": model_path,
    }
    (out_dir / ADAPTER_CONFIG).write_text(json.dumps(adapter_config, indent=2))


def save_checkpoint(
    run_dir: Path,
    state: TrainingState,
    lora: dict[str, mx.array],
    optimizer: optim.Optimizer,
    extra: dict[str, dict[str, mx.array]] | None = None,
) -> None:
    """Atomically replace RUN/checkpoint with the given state (extra: e.g. {"teacher": params})."""
    tmp, final, old = run_dir / "checkpoint.tmp", run_dir / "checkpoint", run_dir / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    mx.save_safetensors(str(tmp / "lora.safetensors"), lora)
    mx.save_safetensors(str(tmp / "optimizer.safetensors"), dict(tree_flatten(optimizer.state)))
    for name, arrays in (extra or {}).items():
        mx.save_safetensors(str(tmp / f"{name}.safetensors"), arrays)
    (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2))
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_dir(run_dir: Path) -> Path | None:
    """The complete checkpoint of a run, if any (an interrupted swap leaves checkpoint.old)."""
    for name in ("checkpoint", "checkpoint.old"):
        path = run_dir / name
        if (path / "state.json").is_file():
            return path
    return None


def load_checkpoint(run_dir: Path, optimizer: optim.Optimizer, extra_names: tuple[str, ...] = ()):
    """Returns (state, lora, extras) and restores the optimizer state in place."""
    path = checkpoint_dir(run_dir)
    if path is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to resume from (expected {run_dir / 'checkpoint'}).")
    state = TrainingState(**json.loads((path / "state.json").read_text()))
    lora = mx.load(str(path / "lora.safetensors"))
    optimizer.state = tree_unflatten(list(mx.load(str(path / "optimizer.safetensors")).items()))
    extras = {name: mx.load(str(path / f"{name}.safetensors")) for name in extra_names}
    return state, lora, extras


def _flatten(d, prefix: str) -> dict:
    """{"a": {"b": 1}} -> {"prefix.a.b": 1}: nested sections compared (and named) field by field."""
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}"))
    return out


def check_same_recipe(
    recipe, saved_path: Path, sections: Sequence[str], extra: Sequence[str] = ("run.seed",), ignore: Sequence[str] = ()
) -> None:
    """Refuse to continue a stage whose saved recipe differs in the sections it depends on.

    `extra`: single dotted keys outside those sections that matter too; `ignore`: dotted keys inside
    them that may change on resume (e.g. distill.steps, to train longer).
    """
    from .config import load_recipe
    from .configio import to_dict

    saved, now = to_dict(load_recipe(saved_path)), to_dict(recipe)
    flat_saved = {k: v for s in sections for k, v in _flatten(saved[s], s).items()}
    flat_now = {k: v for s in sections for k, v in _flatten(now[s], s).items()}
    diffs = [
        f"{k}: {flat_saved.get(k)!r} -> {flat_now.get(k)!r}"
        for k in sorted(set(flat_saved) | set(flat_now))
        if flat_saved.get(k) != flat_now.get(k) and k not in ignore
    ]
    for dotted in extra:
        s, k = dotted.split(".")
        if saved[s][k] != now[s][k]:
            diffs.append(f"{dotted}: {saved[s][k]!r} -> {now[s][k]!r}")
    if diffs:
        raise ValueError(
            f"{saved_path.parent} was started with another recipe ({'; '.join(diffs)}). "
            "Continue with the same recipe, or choose another run.output_dir."
        )

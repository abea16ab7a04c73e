"""Loading a model for training and choosing what it trains (LoRA, DoRA or full), through mlx-lm's functions.

Whatever the choice, `trainable(model)` is the set of arrays a stage trains, checkpoints and writes
as adapters, and the one the distill teacher keeps its own values of (teacher.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten
from mlx_lm import load as mlx_lm_load
from mlx_lm.tuner.utils import linear_to_lora_layers

from . import grad_checkpoint
from .config import LoraConfig, ModelConfig

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in model.named_modules())


def looks_local(path: str) -> bool:
    """Whether a model path can only be a folder: a Hub repo id is exactly 'owner/name'."""
    if path.startswith((".", "/", "~")) or path.count("/") > 1 or path.endswith("/") or "\\" in path:
        return True
    return "/" in path and Path(path.split("/", 1)[0]).is_dir()  # "models/x" next to a models/ folder


def check_model_path(path: str, adapter_path: str | None = None) -> None:
    """A missing local folder gets a message about folders, not the Hub's 'Repo id must be ...'."""
    local = Path(path).expanduser()
    if local.exists() and not local.is_dir():
        raise ValueError(f"Model path {path} is a file; give the model folder (it holds config.json).")
    if not local.exists() and looks_local(path):
        raise FileNotFoundError(
            f"Model folder {path} does not exist. Give an mlx-lm model folder (with config.json) "
            "or a Hugging Face repo id such as Qwen/Qwen2.5-0.5B-Instruct."
        )
    if adapter_path is not None and not Path(adapter_path).expanduser().is_dir():
        raise FileNotFoundError(f"Adapter folder {adapter_path} does not exist (it should hold adapters.safetensors).")


def adapter_base_mismatch(model_path: str, adapter_path: str) -> str | None:
    """A warning when adapter_config.json's `model` (written by mlx-lm's trainer and by this package)
    names another base model than the one they are loaded on; None when they agree or it is not recorded."""
    config_file = Path(adapter_path).expanduser() / "adapter_config.json"
    try:
        trained_on = json.loads(config_file.read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        return None  # mlx-lm reports a missing or broken adapter config itself
    if not isinstance(trained_on, str) or not trained_on:
        return None
    same = trained_on == model_path or (Path(trained_on).expanduser().exists()
                                         and Path(trained_on).expanduser().resolve() == Path(model_path).expanduser().resolve())
    if same:
        return None
    return (f"warning: the adapters in {adapter_path} were trained on {trained_on} (adapter_config.json), and are "
            f"loaded on {model_path}; unless that is the same model, they do not fit it.")


def load_model(config: ModelConfig, adapter_path: str | None = None):
    """mlx_lm.load, then the recipe's dtype. `auto` means float32 on CPU: bf16 matmuls crawl there."""
    check_model_path(config.path, adapter_path)
    # mlx-lm does not expand "~" (it would look for a Hub repo called "~/models/x")
    path = str(Path(config.path).expanduser()) if config.path.startswith("~") else config.path
    adapter_path = None if adapter_path is None else str(Path(adapter_path).expanduser())
    if adapter_path is not None and (warning := adapter_base_mismatch(path, adapter_path)):
        print(warning, file=sys.stderr)
    model, tokenizer = mlx_lm_load(path, adapter_path=adapter_path)
    dtype = config.dtype
    if dtype == "auto":
        dtype = "float32" if mx.default_device() == mx.cpu else None
    if dtype is not None and not is_quantized(model):
        model.set_dtype(DTYPES[dtype])
    return model, tokenizer


def make_trainable(model: nn.Module, config: LoraConfig, seed: int) -> None:
    """Freeze the base, then open what `lora.fine_tune_type` trains (as mlx-lm's lora.py does).

    lora / dora: the linear layers of the last num_layers blocks become mlx-lm LoRA / DoRA layers
    (seeded init, B = 0, so the model is unchanged); full: every weight of those blocks trains.
    With lora.grad_checkpoint every block is recomputed in backward passes (grad_checkpoint.py).
    """
    model.freeze()
    mx.random.seed(seed)
    n = lora_num_layers(model, config)
    if config.grad_checkpoint:
        grad_checkpoint.enable(model)
    if config.fine_tune_type == "full":
        for layer in model.layers[len(model.layers) - n :]:
            layer.unfreeze()
        return
    linear_to_lora_layers(model, n, config.mlx_lm_parameters(), use_dora=config.fine_tune_type == "dora")


def lora_num_layers(model: nn.Module, config: LoraConfig) -> int:
    return len(model.layers) if config.num_layers == -1 else config.num_layers


def trainable(model: nn.Module) -> dict[str, mx.array]:
    """Flat name -> array of the trained parameters (LoRA / DoRA factors, or the full blocks' weights)."""
    return dict(tree_flatten(model.trainable_parameters()))


def set_params(model: nn.Module, params: dict[str, mx.array]) -> None:
    model.update(tree_unflatten(list(params.items())))


def fuse_lora(model: nn.Module) -> None:
    """Fold every LoRA delta into its base weight (mlx-lm's own fuse), leaving plain layers."""
    fused = [(name, module.fuse()) for name, module in model.named_modules() if hasattr(module, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))


def padding_id(tokenizer) -> int:
    """Id used for right padding: the tokenizer's pad token, else 0 (padded positions are masked)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

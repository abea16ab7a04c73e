"""run.device (auto | cpu | gpu): where a run computes, the refusal without a GPU, and honest GPU detection."""

import importlib
import json

import mlx.core as mx
import mlx_lm
import pytest
from typer.testing import CliRunner

from sdzero_mlx import rollout
from sdzero_mlx.platform import device as device_mod
from sdzero_mlx.cli import app
from sdzero_mlx.config import SamplingConfig
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.platform.device import device_name, gpu_status, use_device
from sdzero_mlx.stages.distill import run_distill

GPU = gpu_status()
mlx_lm_generate = importlib.import_module("mlx_lm.generate")  # the module: mlx_lm.generate is also a function


@pytest.fixture(autouse=True)
def keep_default_device():
    before = mx.default_device()
    yield
    mx.set_default_device(before)


def test_cpu_is_forced_and_written_into_the_metrics(tiny_recipe, tmp_path):
    recipe = load_recipe(tiny_recipe, ["run.device=cpu", "distill.steps=1"])
    run_distill(recipe, tmp_path / "run")
    assert mx.default_device() == mx.cpu and device_name() == "cpu"
    [line] = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(line)["device"] == "cpu" and json.loads(line)["world_size"] == 1


def test_an_unknown_device_is_rejected_with_the_choices(tiny_recipe):
    with pytest.raises(ValueError, match="run.device"):
        load_recipe(tiny_recipe, ["run.device=tpu"])


@pytest.mark.skipif(GPU.available, reason="this machine has a GPU: the refusal cannot happen")
def test_gpu_without_one_is_refused_with_the_reason(tiny_recipe):
    with pytest.raises(RuntimeError, match="run.device is gpu but there is no usable GPU: " + GPU.detail[:20]):
        use_device("gpu")
    result = CliRunner().invoke(app, ["distill", str(tiny_recipe), "--set", "run.device=gpu"])
    assert result.exit_code == 2 and "run.device=cpu" in result.output


def test_detection_reports_errors_and_a_cuda_wheel_without_a_gpu(monkeypatch):
    def broken(_):
        raise RuntimeError("CUDA driver version is insufficient")

    monkeypatch.setattr(mx, "is_available", broken)
    status = gpu_status()
    assert not status.available
    assert status.detail == "mx.is_available(mx.gpu) raised RuntimeError: CUDA driver version is insufficient"
    monkeypatch.setattr(mx, "is_available", lambda _: False)
    monkeypatch.setattr(device_mod, "_installed", lambda dist: dist == "mlx-cuda-12")
    assert gpu_status().detail.startswith("mlx-cuda-12 is installed but MLX sees no GPU: check the NVIDIA driver")


@pytest.mark.gpu
@pytest.mark.skipif(not GPU.available, reason=f"no GPU for MLX here: {GPU.detail}")
def test_a_run_on_the_gpu_says_so_in_its_metrics(tiny_recipe, tmp_path):
    recipe = load_recipe(tiny_recipe, ["run.device=gpu", "distill.steps=1"])
    run_distill(recipe, tmp_path / "run")
    [line] = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(line)["device"] == f"gpu ({GPU.backend})"


@pytest.fixture
def mlx_lm_stream_elsewhere(monkeypatch):
    """mlx-lm's module-level generation_stream, made on the default device when mlx_lm.generate was
    imported: on a Mac that is Metal, before `run.device` is read. Linux has only the CPU, so a
    separate CPU stream stands for it; sampling must not use it. Returns the stale stream and the
    streams each sampling call (waves.decode) ran on."""
    stale = mx.new_stream(mx.cpu)
    monkeypatch.setattr(mlx_lm_generate, "generation_stream", stale)
    seen, decode = [], rollout.decode

    def recording_decode(*args, **kwargs):
        seen.append(mx.default_stream(mx.default_device()))  # the stream every operation of the call goes to
        return decode(*args, **kwargs)

    monkeypatch.setattr(rollout, "decode", recording_decode)
    return stale, seen


def chosen_stream() -> mx.Stream:
    """The stream sampling_stream() (thread-local) stands for in this thread."""
    with mx.stream(device_mod.sampling_stream()):
        return mx.default_stream(mx.default_device())


def test_sampling_runs_on_the_device_run_device_names(tiny_model_dir, mlx_lm_stream_elsewhere):
    stale, seen = mlx_lm_stream_elsewhere
    model, tok = mlx_lm.load(str(tiny_model_dir))
    use_device("cpu")
    [c] = rollout.generate_completions(model, tok, [tok.encode("What is 3 + 4?")], SamplingConfig(max_tokens=4), seed=0)
    [stream] = seen
    assert stream != stale and stream != mx.default_stream(mx.cpu)  # not mlx-lm's, nor the process default
    assert stream == chosen_stream() and stream.device == mx.cpu
    assert len(c.ids) == 4 or c.finish_reason == "stop"


def test_parity_cpu_run_decodes_on_the_cpu(tiny_model_dir, mlx_lm_stream_elsewhere):
    from sdzero_mlx.parity import backend_run

    stale, seen = mlx_lm_stream_elsewhere
    out = backend_run(tiny_model_dir, "cpu", "float32", greedy_tokens=2)
    [stream] = seen
    assert stream != stale and stream == chosen_stream() and stream.device == mx.cpu
    assert 1 <= len(out["greedy.tokens"]) <= 3  # 2 tokens, plus the stop id when it stopped

"""sdzero against mlx-lm-lora on equal work: GRPO steps on the same model, prompts, group, LoRA and length.

    python benchmarks/bench_peer.py --setup     # once: the peer's own environment (below), ~40 s, ~650 MB
    python benchmarks/bench_peer.py [--quick] [--model smollm|tiny] [--steps 4] [--lengths forced|natural]

The peer is mlx-lm-lora 5.10.2 (GRPO, DPO, ... on MLX; it has no distillation mode, so GRPO is the
stage both tools have). It is never a dependency of sdzero: `--setup` makes its own venv at
~/.cache/sdzero-mlx/peer-venv with the mlx, mlx-lm (and sympy, for our verifier) versions of the
running environment, and `--peer-python` names another. Each tool runs in its own process, one after
the other, under the same environment: OpenBLAS preloaded with one thread as `sdzero` runs it.

What is held equal (recipes/smollm2-135m-chain-sum.yaml's data and prompt, a small GRPO step):
- the model (SmolLM2-135M-Instruct float32 from tests/smollm.py, or the tiny demo model), and the same
  64 chain-sum problems; the prompt token ids are checked to be identical: the peer always puts a
  system message in its chat template, so both get SmolLM2's own default one (sdzero's recipe sends
  none and the template adds that same one: its ids are unchanged);
- 2 questions x group 4 per step, at most `--max-tokens` tokens, temperature 0.7 with no top-p / top-k
  (the peer's CLI fixes top_p 0.95, top_k 20: they are set to sdzero's here), lr 1e-5 constant, LoRA
  rank 8 scale 20 dropout 0 on every block (the trainable parameter counts are checked equal),
  micro-batches of 2 sequences (the peer's: one per question), no dynamic sampling (the peer trains
  every group; sdzero would drop groups of equal rewards);
- the reward: our verifier's binary reward (the recipe's `verifier:` section) in both, given to the
  peer as a reward function of its registry. Its default rewards look for <answer> tags that our
  prompt does not ask for: every reward would be 0.
- one extra forward pass each: sdzero scores pi_old before the update, the peer scores its reference
  model (its default KL penalty, beta 0.1, with a second copy of the model in memory).

Equal work: `--lengths forced` (the default) turns stop tokens off in both, so every answer is exactly
max-tokens long and both generate and train the same number of tokens per step; step times compare
directly. `--lengths natural` lets both stop at the end-of-turn token (the peer also at "</answer>"):
then the answers differ in length, and only the figures per generated and per trained token compare.
Why forced is the default: per-token figures do not normalise the per-step costs (prefill, set-up,
the optimizer), so a tool whose answers are longer looks cheaper per token.

Measured by this script, the same way for both (the tools' own timers differ in what they include):
a step runs from the start of its sampling to the end of its update; "sample" is the sampling call
alone (the rest of the step, rewards included, is "train"). Wall and CPU seconds (the process's CPU
time, all threads: a shared machine stretches it far less than wall time). Peak memory: each tool's
own report (sdzero: MLX's peak within the step; the peer: MLX's peak since it started), and the
kernel's high-water resident size from outside (ru_maxrss from wait4: the process's VmHWM, or a reaped
child's if larger; its children are the verifier's small workers, in both). The
first step (compilation, warm-up) is shown apart; medians are over the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER = "mlx-lm-lora==5.10.2"
PEER_VENV = Path.home() / ".cache" / "sdzero-mlx" / "peer-venv"
RECIPE = ROOT / "recipes" / "smollm2-135m-chain-sum.yaml"
# SmolLM2's chat template adds this system message when a conversation has none; the peer always sends one
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QUESTIONS, GROUP, PROBLEMS = 2, 4, 64


# --- the peer's environment -------------------------------------------------------------------------

def peer_pins() -> list[str]:
    """The peer and the versions of mlx, mlx-lm (and sympy, our verifier's) this environment runs."""
    from importlib import metadata

    pins = [PEER]
    for name in ("mlx", "mlx-cpu", "mlx-lm", "sympy"):
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return pins


def setup_peer_venv(venv: Path) -> Path:
    """Create the peer's venv (python -m venv, pip install pinned); returns its python."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *peer_pins()], check=True)
    return python


def check_peer(python: Path) -> str:
    """The peer's version in that python, or a FileNotFoundError naming the fix."""
    if not python.exists():
        raise FileNotFoundError(f"{python} not found: run `python benchmarks/bench_peer.py --setup` (makes "
                                f"{PEER_VENV}, ~650 MB) or pass --peer-python.")
    out = subprocess.run([str(python), "-c", "from importlib import metadata as m; print(m.version('mlx-lm-lora'))"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise FileNotFoundError(f"{python} has no mlx-lm-lora: run `{python} -m pip install {' '.join(peer_pins())}` "
                                "or `python benchmarks/bench_peer.py --setup`.")
    return out.stdout.strip()


# --- what both runs read ----------------------------------------------------------------------------

def model_dir(kind: str) -> str:
    if kind == "smollm":
        sys.path.insert(0, str(ROOT / "tests"))
        from smollm import smollm_model_dir

        return str(smollm_model_dir())
    from sdzero_mlx.demo.app import base_model_dir

    return str(base_model_dir())


def prepare(work: Path, model: str, steps: int, max_tokens: int, forced: bool) -> dict:
    """Write the problems, sdzero's recipe and the peer's config and data into work; returns the setting."""
    import yaml

    from sdzero_mlx.configio import read_yaml
    from sdzero_mlx.recipe import load_recipe
    from sdzero_mlx.data import make_splits
    from sdzero_mlx.prompts import user_message

    recipe = read_yaml(RECIPE)
    recipe["model"]["path"] = model
    recipe["data"].update(phase1_size=0, phase2_size=PROBLEMS, validation_size=0, eval_size=0)
    (work / "source.yaml").write_text(yaml.safe_dump(recipe))
    problems = make_splits(load_recipe(work / "source.yaml").data).training
    if len(problems) != PROBLEMS:
        raise RuntimeError(f"{recipe['data']['source']} gave {len(problems)} problems, not {PROBLEMS}.")
    rows = [{"id": ex.id, "problem": ex.problem, "answer": ex.answer} for ex in problems]
    (work / "problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    recipe["data"] = {"source": str(work / "problems.jsonl"), "phase1_size": 0, "phase2_size": PROBLEMS,
                      "validation_size": 0, "eval_size": 0}
    recipe["prompts"]["system"] = SYSTEM
    recipe["lora"] = {"fine_tune_type": "lora", "rank": 8, "scale": 20.0, "dropout": 0.0, "num_layers": -1}
    recipe["sampling"].update(temperature=0.7, top_p=1.0, max_tokens=max_tokens)
    recipe["grpo"] = {"steps": steps, "questions_per_step": QUESTIONS, "group_size": GROUP,
                      "micro_batch_size": QUESTIONS, "dynamic_sampling": False,
                      "optim": {"learning_rate": 1e-5, "warmup_steps": 0, "schedule": "constant", "grad_clip": 1.0}}
    recipe["run"].update(output_dir=str(work / "sdzero-run"), save_every=10**6, probe_every=0)
    (work / "sdzero.yaml").write_text(yaml.safe_dump(recipe))
    resolved = load_recipe(work / "sdzero.yaml")  # checked here, before either run

    data = work / "peer-data"
    data.mkdir()
    template = resolved.prompts
    (data / "train.jsonl").write_text("".join(
        json.dumps({"prompt": user_message(r["problem"], template), "answer": r["answer"], "system": SYSTEM}) + "\n"
        for r in rows))
    # group_size, max_completion_length and temperature go on the command line (peer_argv): mlx-lm-lora 5.10.2
    # ignores them in a config file, whose values only fill options whose command-line default is None
    peer = {"model": model, "train": True, "train_mode": "grpo", "train_type": "lora", "data": str(data),
            "batch_size": QUESTIONS, "iters": steps, "learning_rate": 1e-5, "num_layers": -1,
            "lora_parameters": {"rank": 8, "scale": 20.0, "dropout": 0.0},
            "reward_functions": "sdzero_verifier", "steps_per_report": 1, "steps_per_eval": 10**6,
            "save_every": 10**6, "adapter_path": str(work / "peer-adapters"), "fuse": False, "seed": 0}
    (work / "peer.yaml").write_text(yaml.safe_dump(peer))
    setting = {"forced": forced, "verifier": asdict(resolved.verifier), "max_tokens": max_tokens}
    (work / "setting.json").write_text(json.dumps(setting))
    return setting


def peer_argv(work: Path, max_tokens: int) -> list[str]:
    """The peer's command line: its config file, and the options it reads only from the command line."""
    return ["mlx_lm_lora.train", "-c", str(work / "peer.yaml"), "--group-size", str(GROUP),
            "--max-completion-length", str(max_tokens), "--temperature", "0.7"]


# what the peer must have run with (its parsed arguments), checked by the parent
PEER_EXPECTED = {"train_mode": "grpo", "batch_size": QUESTIONS, "group_size": GROUP, "temperature": 0.7,
                 "learning_rate": 1e-5, "num_layers": -1, "lora_parameters": {"rank": 8, "scale": 20.0, "dropout": 0.0}}


def prompt_set(model: str, work: Path) -> set[tuple[int, ...]]:
    """sdzero's prompt ids of the 64 problems: what both children must have sampled from."""
    from mlx_lm.utils import load_tokenizer

    from sdzero_mlx.config import PromptConfig
    from sdzero_mlx.configio import from_dict, read_yaml
    from sdzero_mlx.prompts import prompt_ids

    tokenizer = load_tokenizer(Path(model))
    prompts = from_dict(PromptConfig, read_yaml(work / "sdzero.yaml")["prompts"], where="prompts")
    rows = [json.loads(line) for line in (work / "problems.jsonl").read_text().splitlines()]
    return {prompt_ids(tokenizer, r["problem"], prompts) for r in rows}


# --- the children: one process per tool ---------------------------------------------------------------

def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return wall - start[0], cpu - start[1]


@contextmanager
def stops_off(tokenizer, forced: bool):
    """No stop token while sampling (forced lengths): every answer runs to max_tokens."""
    saved = set(tokenizer.eos_token_ids)
    if forced:
        tokenizer.eos_token_ids = []
    try:
        yield
    finally:
        tokenizer.eos_token_ids = saved


def emit(work: Path, tool: str, **values) -> None:
    """One result line of a child, into its own file (its stdout is the tool's log, progress bars and all)."""
    with (work / f"{tool}.jsonl").open("a") as f:
        f.write(json.dumps(values) + "\n")


def trainable_count(model) -> int:
    from mlx.utils import tree_flatten

    return sum(v.size for _, v in tree_flatten(model.trainable_parameters()))


def child_sdzero(work: Path) -> None:
    """`run_grpo` (what `sdzero grpo` runs) on sdzero.yaml, its sampling and steps timed from outside the stage."""
    from sdzero_mlx.recipe import load_recipe
    from sdzero_mlx.stages import loop
    from sdzero_mlx.stages.grpo import run_grpo

    forced = json.loads((work / "setting.json").read_text())["forced"]
    state = {"sample": (0.0, 0.0), "generated": 0, "prompts": set()}
    real_sample_groups, real_train = loop.sample_groups, loop.Trainee.train

    def sample_groups(model, tokenizer, examples, group_size, prompts, sampling, seed, on_finish=None):
        state.setdefault("trainable", trainable_count(model))
        start = clocks()
        with stops_off(tokenizer, forced):
            rollouts = real_sample_groups(model, tokenizer, examples, group_size, prompts, sampling, seed, on_finish)
        state["sample"] = since(start)
        state["generated"] = sum(len(r.completion_ids) + (r.stop_id is not None) for r in rollouts)
        state["prompts"].update(r.prompt_ids for r in rollouts)
        return rollouts

    def train(self, steps, step_fn, optimizers, *args, on_step=None, **kwargs):  # the stage's own on_step: replaced
        def timed_step(step):
            start = clocks()
            out = step_fn(step)
            state["step"] = since(start)
            return out

        trained = [0]

        def report(record):
            (wall, cpu), (s_wall, s_cpu) = state["step"], state["sample"]
            emit(work, "sdzero", step=record.step, wall=wall, cpu=cpu, sample_wall=s_wall, sample_cpu=s_cpu,
                 generated=state["generated"], trained=record.trained_tokens - trained[0], peak_gb=record.peak_memory_gb)
            trained[0] = record.trained_tokens

        return real_train(self, steps, timed_step, optimizers, *args, on_step=report, **kwargs)

    loop.sample_groups, loop.Trainee.train = sample_groups, train
    recipe = load_recipe(work / "sdzero.yaml")
    run_grpo(recipe, Path(recipe.run.output_dir))
    emit(work, "sdzero", trainable=state["trainable"], prompts=sorted(state["prompts"]))


def child_peer(work: Path) -> None:
    """mlx-lm-lora's own CLI (`python -m mlx_lm_lora.train -c peer.yaml`), with our reward registered, its
    sampler set to sdzero's (temperature alone), and its iterations timed from outside its trainer."""
    import mlx_lm_lora.train as peer_cli
    from mlx_lm.tuner.callbacks import TrainingCallback
    from mlx_lm_lora.trainer import grpo_trainer
    from mlx_lm_lora.trainer.grpo_reward_functions import register_reward_function

    from sdzero_mlx.configio import from_dict
    from sdzero_mlx.verifier import verify_batch
    from sdzero_mlx.verifier.config import VerifierConfig

    setting = json.loads((work / "setting.json").read_text())
    forced, verifier = setting["forced"], from_dict(VerifierConfig, setting["verifier"], where="verifier")

    @register_reward_function("sdzero_verifier")
    def sdzero_verifier(prompts, completions, answer, types=None):
        return verify_batch(list(completions), list(answer), verifier)

    state = {"prompts": set()}
    real_generate = grpo_trainer.generate_grpo

    def generate_grpo(model, tokenizer, prompt_tokens, max_tokens, group_size, batch_size, end_token, temperature,
                      top_p, top_k, min_p):
        state.setdefault("trainable", trainable_count(model))
        state["start"] = start = clocks()  # a step starts with its sampling
        with stops_off(tokenizer, forced):
            out = real_generate(model, tokenizer, prompt_tokens, max_tokens, group_size, batch_size,
                                "" if forced else end_token, temperature, 1.0, 0, 0.0)
        state["sample"] = since(start)
        state["generated"] = sum(c.size for c in out[0])
        state["prompts"].update(tuple(int(t) for t in p) for p in prompt_tokens)
        return out

    class Report(TrainingCallback):
        trained = 0

        def on_train_loss_report(self, info):
            (wall, cpu), (s_wall, s_cpu) = since(state["start"]), state["sample"]
            emit(work, "peer", step=info["iteration"], wall=wall, cpu=cpu, sample_wall=s_wall, sample_cpu=s_cpu,
                 generated=state["generated"], trained=int(info["trained_tokens"]) - self.trained,
                 peak_gb=info["peak_memory"])
            self.trained = int(info["trained_tokens"])

    real_run = peer_cli.run

    def run(args, training_callback=None):
        settings = {k: getattr(args, k) for k in (*PEER_EXPECTED, "max_completion_length", "beta", "optimizer", "iters")}
        emit(work, "peer", settings=settings)
        return real_run(args, Report())

    grpo_trainer.generate_grpo, peer_cli.run = generate_grpo, run
    sys.argv = peer_argv(work, setting["max_tokens"])
    peer_cli.main()
    emit(work, "peer", trainable=state["trainable"], prompts=sorted(state["prompts"]))


# --- the parent: run both, compare -------------------------------------------------------------------

def child_env() -> dict:
    """The same environment for both: OpenBLAS preloaded with one thread (what `sdzero` does), our package."""
    from sdzero_mlx.platform.blas import find_openblas

    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", SDZERO_BLAS_REEXEC="1")
    library = find_openblas()
    if library is not None:
        env["LD_PRELOAD"] = ":".join(p for p in (str(library), os.environ.get("LD_PRELOAD", "")) if p)
    return env


def run_child(name: str, python: str, work: Path) -> dict:
    """Run one tool's child to the end; its step lines, its result, and what the kernel saw of it."""
    from sdzero_mlx.platform.facts import facts

    log = work / f"{name}.log"
    load_before = os.getloadavg()
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--child", name, str(work)], cwd=work,
                                stdout=out, stderr=subprocess.STDOUT, env=child_env())
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}); the end of {log}:\n{text[-3000:]}")
    lines = [json.loads(line) for line in (work / f"{name}.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "step" in x]
    final = next(x for x in lines if "trainable" in x)
    settings = next((x["settings"] for x in lines if "settings" in x), None)
    rss_gb = usage.ru_maxrss / (1e9 if facts().macos else 1e6)  # bytes on macOS, KiB on Linux
    return {"steps": steps, "settings": settings, "trainable": final["trainable"], "prompts": {tuple(p) for p in final["prompts"]},
            "rss_gb": rss_gb, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "load": (load_before[0], os.getloadavg()[0])}


def summary(run: dict) -> dict:
    """Medians over the steps after the first, and the per-token figures they give."""
    timed = run["steps"][1:] or run["steps"]
    med = {k: statistics.median(s[k] for s in timed) for k in ("wall", "cpu", "sample_wall", "sample_cpu",
                                                               "generated", "trained")}
    train_wall, train_cpu = med["wall"] - med["sample_wall"], med["cpu"] - med["sample_cpu"]
    per = lambda seconds, tokens: 1e3 * seconds / max(tokens, 1)  # noqa: E731  (ms per token)
    return {**med, "n": len(timed), "first_wall": run["steps"][0]["wall"],
            "ms_gen": per(med["sample_wall"], med["generated"]), "ms_gen_cpu": per(med["sample_cpu"], med["generated"]),
            "ms_trained": per(train_wall, med["trained"]), "ms_trained_cpu": per(train_cpu, med["trained"]),
            "ms_step_gen": per(med["wall"], med["generated"]), "ms_step_gen_cpu": per(med["cpu"], med["generated"]),
            "peak_gb": max(s["peak_gb"] for s in run["steps"]), "rss_gb": run["rss_gb"]}


def report(runs: dict, expected_prompts: set, setting: dict) -> None:
    peer, ours = runs["peer"], runs["sdzero"]
    expected = {**PEER_EXPECTED, "max_completion_length": setting["max_tokens"]}
    wrong = {k: peer["settings"][k] for k, v in expected.items() if peer["settings"][k] != v}
    print(f"the peer ran with {peer['settings']}")
    if wrong:
        raise RuntimeError(f"the peer did not run with the setting asked for: {wrong} (expected {expected}).")
    same_prompts = all(r["prompts"] <= expected_prompts for r in runs.values())
    print(f"prompt ids: {'every sampled prompt of both is one of the 64' if same_prompts else 'DIFFER'} "
          f"(peer drew {len(peer['prompts'])}, sdzero {len(ours['prompts'])} distinct); trainable parameters: "
          f"peer {peer['trainable']:,}, sdzero {ours['trainable']:,}")
    if not same_prompts or peer["trainable"] != ours["trainable"]:
        raise RuntimeError("the two runs did not get the same prompts or LoRA: the comparison would not be equal work.")
    s = {name: summary(run) for name, run in runs.items()}
    print(f"{'':7s} | {'step wall':>9s} {'CPU':>6s} | {'sample':>6s} {'train':>6s} | {'gen tok':>7s} {'trained':>7s} | "
          f"{'ms/gen tok':>10s} {'ms/trained':>10s} {'step ms/gen':>11s} | {'own peak':>8s} {'resident':>8s} | "
          f"{'first':>6s} {'load':>9s}")
    for name in ("peer", "sdzero"):
        x, run = s[name], runs[name]
        print(f"{name:7s} | {x['wall']:8.1f}s {x['cpu']:5.1f}s | {x['sample_wall']:5.1f}s {x['wall'] - x['sample_wall']:5.1f}s | "
              f"{x['generated']:7.0f} {x['trained']:7.0f} | {x['ms_gen']:10.1f} {x['ms_trained']:10.1f} {x['ms_step_gen']:11.1f} | "
              f"{x['peak_gb']:6.2f}GB {x['rss_gb']:6.2f}GB | {x['first_wall']:5.1f}s {run['load'][0]:4.1f}-{run['load'][1]:.1f}")
    for name in ("peer", "sdzero"):
        steps = ", ".join(f"{st['wall']:.1f}" for st in runs[name]["steps"])
        print(f"  {name} steps (wall s): {steps}; the process: {runs[name]['wall']:.0f} s wall, {runs[name]['cpu']:.0f} s CPU")
    r = {k: s["sdzero"][k] / s["peer"][k] for k in ("wall", "cpu", "ms_gen", "ms_gen_cpu", "ms_trained", "ms_trained_cpu",
                                                    "ms_step_gen", "ms_step_gen_cpu", "peak_gb", "rss_gb")}
    print(f"sdzero / peer: step {r['wall']:.2f}x wall, {r['cpu']:.2f}x CPU; per generated token: sampling {r['ms_gen']:.2f}x "
          f"wall ({r['ms_gen_cpu']:.2f}x CPU), whole step {r['ms_step_gen']:.2f}x wall ({r['ms_step_gen_cpu']:.2f}x CPU); "
          f"per trained token (the step less sampling) {r['ms_trained']:.2f}x wall ({r['ms_trained_cpu']:.2f}x CPU); "
          f"peak memory {r['peak_gb']:.2f}x by their own reports, {r['rss_gb']:.2f}x resident")
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    print(f"targets: time per generated token <= the peer's: {met(r['ms_step_gen'] <= 1 and r['ms_step_gen_cpu'] <= 1)}; "
          f"peak memory <= the peer's: {met(r['rss_gb'] <= 1 and r['peak_gb'] <= 1)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setup", action="store_true", help=f"create the peer's venv at {PEER_VENV} and exit")
    parser.add_argument("--peer-python", type=Path, default=PEER_VENV / "bin" / "python")
    parser.add_argument("--model", choices=["smollm", "tiny"], default="smollm")
    parser.add_argument("--steps", type=int, default=4, help="steps per tool; the first is warm-up")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--lengths", choices=["forced", "natural"], default="forced")
    parser.add_argument("--quick", action="store_true", help="2 steps of 32 tokens each (a couple of minutes)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (logs, runs, configs)")
    parser.add_argument("--child", nargs=2, metavar=("TOOL", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        {"sdzero": child_sdzero, "peer": child_peer}[args.child[0]](Path(args.child[1]))
        return
    if args.setup:
        print(f"peer environment ready: {setup_peer_venv(PEER_VENV)} ({', '.join(peer_pins())})")
        return
    version = check_peer(args.peer_python)
    steps, max_tokens = (2, 32) if args.quick else (args.steps, args.max_tokens)
    model = model_dir(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        setting = prepare(work, model, steps, max_tokens, args.lengths == "forced")
        print(f"mlx-lm-lora {version} ({args.peer_python}) vs sdzero at {git_commit()}; {os.cpu_count()} cores; "
              f"OpenBLAS 1 thread in both; model {model}")
        print(f"{PROBLEMS} chain-sum prompts, {QUESTIONS} questions x group {GROUP} per step, <= {max_tokens} tokens "
              f"({'stop tokens off in both: every answer ' + str(max_tokens) + ' tokens' if setting['forced'] else 'stopping at end of turn'}), "
              f"T 0.7, lr 1e-5, LoRA rank 8 scale 20 on every block, {steps} steps each (the first is warm-up)", flush=True)
        runs = {}
        for name, python in (("peer", str(args.peer_python)), ("sdzero", sys.executable)):
            runs[name] = run_child(name, python, work)
        report(runs, prompt_set(model, work), setting)


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return (out.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")


if __name__ == "__main__":
    main()

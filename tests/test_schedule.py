"""compare's worker processes (schedule.py): the task graph, its failures, and the same results as one process."""

import json

import pytest

from sdzero_mlx.compare import run_compare
from sdzero_mlx.demo.app import QUICK, TASKS, base_model_dir
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.schedule import makespan, run_tasks
from sdzero_mlx.stages import baselines
from sdzero_mlx.tasks import Task, chain_names, plan

CHAIN_STAGES = chain_names()


def baseline_specs() -> dict:
    return {s.name: s for s in baselines()}


def test_plan_puts_the_chain_first_the_baselines_after_collect_and_the_base_last():
    tasks = plan(["base", "srt", "distill", "rft", "sft"], chain=CHAIN_STAGES, trained=baseline_specs(), evaluate=True)
    assert [(t.name, t.needs, t.budget) for t in tasks] == [
        ("collect", (), False),
        ("srt", ("collect",), False),
        ("distill", ("srt",), False),
        ("train rft", ("collect",), True),  # samples: its steps come from SD-Zero's generations
        ("train sft", (), False),  # samples nothing: its own epochs, from the start
        ("eval srt", ("srt",), False),
        ("eval distill", ("distill",), False),
        ("eval rft", ("train rft",), False),
        ("eval sft", ("train sft",), False),
        ("eval base", (), False),
    ]
    # a budget set in the recipe: the baseline waits for nothing
    given = plan(["distill", "rft"], chain=CHAIN_STAGES, trained=baseline_specs(), evaluate=False, budget_given=True)
    assert [(t.name, t.needs) for t in given][-1] == ("train rft", ())
    # a search trains only; without the chain a baseline waits for nothing
    assert [t.name for t in plan(["rft"], chain=(), trained=baseline_specs(), evaluate=False)] == ["train rft"]
    assert plan(["rft"], chain=(), trained=baseline_specs(), evaluate=False)[0].needs == ()


def test_makespan_runs_the_plan_as_the_scheduler_does():
    tasks = plan(["base", "srt", "distill", "rft"], chain=CHAIN_STAGES, trained=baseline_specs(), evaluate=True)
    seconds = {"collect": 10, "srt": 5, "distill": 20, "train rft": 15, "eval base": 8, "eval srt": 4,
               "eval distill": 4, "eval rft": 4}
    # by hand, 2 workers: collect 0-10 | eval base 0-8, idle; srt 10-15 | train rft 10-25; distill 15-35 |
    # eval srt 25-29, eval rft 29-33; eval distill 35-39
    assert makespan(tasks, seconds, 2) == 39
    assert makespan(tasks, seconds, 1) == sum(seconds.values()) == 70
    assert makespan(tasks, seconds, 8) == 10 + 5 + 20 + 4  # the chain and its evaluation bound it


def test_a_failed_task_stops_the_run_and_its_error_is_named(tmp_path):
    lines = []
    with pytest.raises(RuntimeError, match=r"task `eval base` failed \(exit 2\)") as err:
        run_tasks([Task("eval base", ()), Task("eval srt", ("eval base",))], tmp_path, 2, lambda: 0, lines.append)
    # the worker found no recipe in the run folder: its one-line error is relayed and repeated
    assert any(l.startswith("error:") and "compare-recipe.yaml" in l for l in lines)
    assert "compare-recipe.yaml" in str(err.value)


def test_a_failed_task_lets_the_running_one_finish(tmp_path):
    """`eval nosuch` fails at once (no such model); collect, already running, finishes and keeps its work."""
    from sdzero_mlx.configio import write_yaml

    write_yaml(_quick_recipe(tmp_path, 2), tmp_path / "compare-recipe.yaml")
    lines = []
    with pytest.raises(RuntimeError, match=r"task `eval nosuch` failed \(exit 2\)"):
        run_tasks([Task("collect", ()), Task("eval nosuch", ()), Task("srt", ("collect",))], tmp_path, 2, lambda: 0,
                  lines.append)
    assert "`eval nosuch` failed: no new tasks start; waiting for collect to finish (their work is kept) ..." in lines
    assert (tmp_path / "collect" / "done").is_file()  # collect finished
    assert not (tmp_path / "srt").exists()  # srt, ready after collect, never started


def test_a_stopped_worker_unwinds_like_sdzero(tmp_path):
    """SIGTERM ends a worker as Ctrl-C would (exit 130, its stage's locks released), and _stop interrupts a
    worker that the terminal's Ctrl-C did not reach."""
    import os
    import signal
    import subprocess
    import sys

    from sdzero_mlx.configio import write_yaml
    from sdzero_mlx.schedule import _stop

    write_yaml(_quick_recipe(tmp_path, 2), tmp_path / "compare-recipe.yaml")
    worker = subprocess.Popen([sys.executable, "-m", "sdzero_mlx.schedule", str(tmp_path), "collect", "0"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert worker.stdout.readline().startswith("collect: batch 0/")  # it is collecting
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 130
    worker.stdout.close()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    _stop([sleeper])  # 3 s to end by itself, then SIGINT: Python's KeyboardInterrupt ends it
    assert sleeper.poll() not in (None, 0)


def test_an_evaluation_cached_under_the_old_protocol_is_evaluated_again(tmp_path):
    from sdzero_mlx.tasks import eval_key, evaluate_cached

    recipe = _quick_recipe(tmp_path, 1)
    key = eval_key(recipe, recipe.model.path, None, "test")
    old = {k: v for k, v in key.items() if k != "protocol"}
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "base.json").write_text(json.dumps({"settings": old, "results": [], "seconds": 1.0}))
    lines = []
    results = evaluate_cached(recipe, "base", recipe.model.path, None, tmp_path, lines.append)
    assert results and results[0].generations == 32 * 2  # evaluated: 32 test problems x (k = 1 + greedy); the cache held none
    assert any("evaluating again" in line and "protocol: '(unset)' ->" in line for line in lines)
    assert json.loads((tmp_path / "eval" / "base.json").read_text())["settings"] == key


def test_tasks_whose_needs_never_come_are_refused(tmp_path):
    with pytest.raises(RuntimeError, match=r"cannot start: srt \(needs collect\)"):
        run_tasks([Task("srt", ("collect",))], tmp_path, 2, lambda: 0, print)


def _quick_recipe(out, workers):
    overrides = [f"model.path={base_model_dir('inverse')}", f"run.output_dir={out}", f"run.workers={workers}",
                 *QUICK, "distill.steps=2", "eval.k=1", "eval.revise=false", "run.probe_every=0"]
    return load_recipe(TASKS["inverse"].recipe, overrides)


def test_two_workers_give_the_results_of_one_process(tmp_path):
    """Every stage seeds itself, so running the baselines beside the chain changes no number; only the
    seconds differ."""
    methods = ["base", "srt", "distill", "rft"]
    one = run_compare(_quick_recipe(tmp_path / "one", 1), methods=methods, log=lambda line: None)
    lines = []
    two = run_compare(_quick_recipe(tmp_path / "two", 2), methods=methods, log=lines.append)

    def numbers(results):
        return {name: [{k: v for k, v in record.items() if k != "seconds"} for record in records]
                for name, records in results["models"].items()}

    assert numbers(two) == numbers(one) and two["budgets"] == one["budgets"]
    assert two["budget_generations"] == one["budget_generations"] == 64 * 4 + 2 * 16  # collect (an answer, 3 revisions) + distill
    for m in methods:  # each model's answers, one by one
        assert (tmp_path / "two" / "eval" / f"{m}.sample.rows.jsonl").read_text() == \
            (tmp_path / "one" / "eval" / f"{m}.sample.rows.jsonl").read_text()
    # the workers' progress reached the log, and rft's started before distill had finished
    assert "rft: budget 288 generations" in lines
    assert lines.index("rft: budget 288 generations") < max(i for i, l in enumerate(lines) if l.startswith("distill: step"))
    record = json.loads((tmp_path / "two" / "rft" / "run.json").read_text())
    assert record["stage"] == "rft"

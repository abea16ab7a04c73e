"""The `sdzero` command: a thin typer shell over the package's functions.

The commands that train one stage (distill, srt, rft, grpo, sft, sdft: `sdzero NAME RECIPE [--resume
RUN] [--set ...]`) and `compare`'s list of methods are generated from the stage registry
(stages/__init__.py); the others are written here. `build_app` assembles both; `sdzero verify`
runs without the registry, which imports every stage module and mlx-lm.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Callable, Optional, Union

import typer

APP_SETTINGS = dict(
    help="SD-Zero on MLX: self-revision training and on-policy self-distillation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
shell = typer.Typer(**APP_SETTINGS)  # the commands written here; build_app adds the generated ones

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a recipe field, e.g. --set optim.learning_rate=3e-4 (repeatable; optim.* "
                 "reaches every stage's optim, unless the same command sets that stage's own)."),
]


RetrainOption = Annotated[
    bool,
    typer.Option("--retrain", help="Train again the finished stages whose recipe fields or inputs changed (and what "
                 "depends on them) instead of refusing; unchanged stages are reused (--set run.retrain=true)."),
]


def with_retrain(set_: Optional[list[str]], retrain: bool) -> Optional[list[str]]:
    """--retrain is the override run.retrain=true: it reaches compare's worker processes with the recipe."""
    return [*(set_ or []), "run.retrain=true"] if retrain else set_


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


# commands without a recipe name fields by these options, not by data.fields.*
FIELD_FLAGS = {"problem": "--field-problem", "answer": "--field-answer", "id": "--field-id"}


def os_error(err: OSError) -> str:
    """One line for a file-system error: which path, what went wrong, what to do."""
    from .atomic import WriteError

    if isinstance(err, WriteError):
        return str(err)
    where = f" {err.filename}" if err.filename else ""
    return f"cannot write or read{where}: {err.strerror or err}. Choose a writable folder (run.output_dir / --out)."


def print_step(record) -> None:
    """A progress line per optimizer step (long work must show progress)."""
    from .metrics import format_record

    typer.echo(format_record(record))


def _load(recipe: Path, set_: Optional[list[str]]):
    from .platform.device import use_device
    from .recipe import load_recipe

    try:
        loaded = load_recipe(recipe, list(set_ or []))
        use_device(loaded.run.device)
        return loaded
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        fail(str(err))


@contextmanager
def long_work(on_interrupt: Union[str, Callable[[], str]]):
    """What every long command does with an error (one line, exit 2) and with Ctrl-C (`on_interrupt`:
    how to continue, or what was kept, or a function that says so at that moment; exit 130)."""
    try:
        yield
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        fail(str(err))
    except OSError as err:
        fail(os_error(err))
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted; {on_interrupt() if callable(on_interrupt) else on_interrupt}", err=True)
        raise typer.Exit(code=130)


def command_words(command: str, recipe: Path, set_: Optional[list[str]], *tail: str) -> list[str]:
    """The command line as the user would type it: every --set kept (steps set there included)."""
    words = ["sdzero", command, str(recipe)]
    for item in set_ or []:
        words += ["--set", item]
    return words + list(tail)


def note_command(command: str, recipe: Path, set_: Optional[list[str]], *tail: str) -> None:
    """Tell rundir.py the command running (for run.json and the lock's holder line)."""
    from .rundir import set_invocation

    set_invocation(command_words(command, recipe, set_, *tail), list(set_ or []))


def same_command(command: str, recipe: Path, set_: Optional[list[str]] = None) -> str:
    import shlex

    again = shlex.join(command_words(command, recipe, set_))
    return f"continue with the same command: {again} (finished work is kept)"


def resume_hint(spec, recipe: Path, set_: Optional[list[str]], resume: Optional[Path], run_dir: Path) -> str:
    """What to type after an interrupt, shell-quoted, every --set kept: a stage of the chain's layout
    (srt) continues by itself; another takes --resume once a checkpoint exists, and before the first
    checkpoint is started again without it."""
    import shlex

    if spec.folder:
        return "continue with: " + shlex.join(command_words(spec.name, recipe, set_, *(
            ["--resume", str(resume)] if resume is not None else [])))
    if spec.run_dir(run_dir).resume_from() is not None:
        return f"continue with: {shlex.join(command_words(spec.name, recipe, set_, '--resume', str(run_dir)))}"
    # the output folder must be named: it came from --resume, --set or the recipe
    given = [s for s in set_ or [] if s.split("=", 1)[0].strip() != "run.output_dir"]
    again = command_words(spec.name, recipe, given + [f"run.output_dir={run_dir}"])
    return f"no checkpoint was saved yet (the first comes at step run.save_every); start again with: {shlex.join(again)}"


# --data is a str, not a Path: pathlib would fold demo://inverse into demo:/inverse (and hf:// likewise)
EVAL_GENERATED = 64  # problems `eval` draws from a generated --data without --limit (as data.eval_size's default)
DataSeedOption = Annotated[int, typer.Option(help="A generated --data source's data seed: which fresh problems are drawn (a file ignores it).")]


def data_examples(data: str, fields, limit: Optional[int], seed: int, generated: int) -> list:
    """--data's examples: a file's first `limit` rows (all when None), or `limit` (default `generated`)
    fresh problems of a generated source (demo://inverse, rg://TASK?...), which has no size of its own."""
    from .data import generated_scheme, load_examples

    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1 (got {limit}).")
    if generated_scheme(data):
        return load_examples(data, fields, FIELD_FLAGS, seed=seed, n=limit or generated)
    return load_examples(data, fields, FIELD_FLAGS)[:limit]  # a path's ~ is expanded there


ResumeOption = Annotated[Optional[Path], typer.Option(help="Run directory to continue.")]
RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")]


def _train(spec, recipe: Path, resume: Optional[Path], set_: Optional[list[str]]) -> None:
    """The shared body of every training-stage command: load, run (or resume), report."""
    overrides = list(set_ or [])
    if resume is not None:
        overrides.append(f"run.output_dir={resume}")
    loaded = _load(recipe, overrides)
    run_dir = Path(loaded.run.output_dir) / spec.folder
    # a stage with a folder of the chain's layout continues what is there, as `sdzero run` does
    resuming = resume is not None or bool(spec.folder and spec.run_dir(run_dir).resume_from() is not None)
    note_command(spec.name, recipe, set_, *(["--resume", str(resume)] if resume is not None else []))
    typer.echo(f"run directory: {run_dir}")
    with long_work(lambda: resume_hint(spec, recipe, set_, resume, run_dir)):  # a checkpoint may exist by then
        state = spec.run(loaded, run_dir, resume=resuming, on_step=print_step)
    typer.echo(
        f"done: {state.step} steps, {state.generations} generations, {state.sampled_tokens} sampled tokens, "
        f"{state.trained_tokens} trained tokens. Adapters: {run_dir / 'adapters'}"
    )


def stage_command(spec):
    """`sdzero NAME RECIPE [--resume RUN] [--set ...]` for one training stage of the registry."""

    def command(recipe: RecipeArg, resume: ResumeOption = None, set_: SetOption = None) -> None:
        _train(spec, recipe, resume, set_)

    command.__doc__ = spec.help
    return command


def compare_command(methods_help: str):
    def compare(
        recipe: RecipeArg,
        methods: Optional[str] = typer.Option(None, help=methods_help),  # help from the registry: not Annotated
        set_: SetOption = None,
        retrain: RetrainOption = False,
    ) -> None:
        """SD-Zero and its baselines on the same splits and generation budget: one table (+ accuracy vs budget PNG)."""
        from .compare import run_compare

        set_ = with_retrain(set_, retrain)
        loaded = _load(recipe, set_)
        chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
        note_command("compare", recipe, set_, *(["--methods", methods] if methods else []))
        typer.echo(f"run directory: {loaded.run.output_dir}")
        with long_work(same_command("compare", recipe, set_)):
            run_compare(loaded, log=typer.echo, methods=chosen)
        out = Path(loaded.run.output_dir)
        typer.echo(f"table: {out / 'compare.md'}; picture: {out / 'compare.png'}")

    return compare


def build_app() -> typer.Typer:
    """The whole command: one command per training stage of the registry, compare, and the written ones."""
    from .stages import methods, training_stages

    app = typer.Typer(**APP_SETTINGS)
    for spec in training_stages():
        app.command(name=spec.name)(stage_command(spec))
    app.command(name="compare")(compare_command(
        f"Comma-separated subset of {','.join(methods())} and compare.variants (by name or id) "
        "(default: compare.methods)."))
    app.registered_commands.extend(shell.registered_commands)
    return app


def __getattr__(name: str):
    if name == "app":  # `from sdzero_mlx.cli import app`: the whole command
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@shell.command()
def sweep(
    recipe: RecipeArg,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; each sets run.seed and data.seed (own problems where the data allows).")] = "0,1,2",
    out: Annotated[Optional[Path], typer.Option(help="Sweep directory (default: run.output_dir); OUT/seed-N per seed.")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated subset of compare's methods (default: compare.methods).")] = None,
    set_: SetOption = None,
    retrain: RetrainOption = False,
) -> None:
    """`compare` over several seeds: per-seed values, means, 95% intervals and paired differences (sweep.md/json/png)."""
    from .rundir import RunDir
    from .sweep import run_sweep
    from .writable import check_output_dir

    set_ = with_retrain(set_, retrain)
    loaded = _load(recipe, set_)
    try:
        chosen_seeds = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        fail(f"--seeds {seeds!r}: give integers separated by commas, e.g. 0,1,2.")
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    target = out or Path(loaded.run.output_dir)
    note_command("sweep", recipe, set_)
    with long_work(f"run the same command again to continue in {target}"):
        with RunDir(check_output_dir(target, "--out")).writing():  # one sweep at a time in OUT
            run_sweep(loaded, chosen_seeds, target, log=typer.echo, methods=chosen)
    typer.echo(f"table: {target / 'sweep.md'}; picture: {target / 'sweep.png'}")


@shell.command()
def search(
    recipe: RecipeArg,
    method: Annotated[str, typer.Option(help="The method to tune: distill (SD-Zero) or a baseline (rft, grpo, sft, sdft).")],
    grid: Annotated[list[str], typer.Option(help="FIELD=V1,V2,... (repeatable): the grid is every combination.")],
    out: Annotated[Path, typer.Option(help="Search directory; OUT/point-NN per grid point.")],
    set_: SetOption = None,
) -> None:
    """A grid over recipe fields for one method, each point scored on the validation split (never the test split)."""
    from .rundir import RunDir
    from .search import parse_grid, run_search
    from .writable import check_output_dir

    _load(recipe, set_)  # a bad recipe or override: the one-line error, before any work
    note_command("search", recipe, set_)
    with long_work(f"run the same command again to continue in {out}"):
        with RunDir(check_output_dir(out, "--out")).writing():  # one search at a time in OUT
            data = run_search(recipe, list(set_ or []), method, parse_grid(grid), out, log=typer.echo)
    typer.echo(f"table: {out / 'search.md'}; best: {' '.join(data['best']['overrides'])}")


@shell.command("pass-curve")
def pass_curve(
    folder: Annotated[Path, typer.Argument(help="A compare run (RUN, with compare-recipe.yaml) or a sweep folder (OUT, "
                                           "with sweep-recipe.yaml and seed-N/).")],
    n: Annotated[int, typer.Option(help="Samples per test problem: pass@k for k = 1, 2, 4, ..., n.")] = 16,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods (default: compare.methods).")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="A sweep folder's seeds (default: each seed-N with a compare.json).")] = None,
    set_: SetOption = None,
) -> None:
    """pass@k up to k = n and distinct final answers per problem, per model of a finished compare or sweep
    (DIR/pass-curve.md/json/png; the models' avg@k files are untouched)."""
    from .passk import run_pass_curve

    set_ = list(set_ or [])
    if (folder / "sweep-recipe.yaml").is_file():
        recipe = folder / "sweep-recipe.yaml"
        try:
            chosen_seeds = ([int(x) for x in seeds.split(",") if x.strip()] if seeds else
                            sorted(int(p.name[5:]) for p in folder.glob("seed-*")
                                   if p.name[5:].isdigit() and (p / "compare.json").is_file()))
        except ValueError:
            fail(f"--seeds {seeds!r}: give integers separated by commas, e.g. 1,2,3.")
        if not chosen_seeds:
            fail(f"{folder} holds no finished seed (seed-N/compare.json); run `sdzero sweep` first.")
    elif (folder / "compare-recipe.yaml").is_file():
        recipe, chosen_seeds = folder / "compare-recipe.yaml", None
        set_.append(f"run.output_dir={folder}")  # the run where it is now
    else:
        fail(f"{folder} is neither a compare run (compare-recipe.yaml) nor a sweep folder (sweep-recipe.yaml).")
    loaded = _load(recipe, set_)
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else list(loaded.compare.methods)
    note_command("pass-curve", folder, set_, "--n", str(n))
    with long_work(f"run the same command again to continue in {folder}"):
        run_pass_curve(loaded, folder, n, chosen, chosen_seeds, log=typer.echo)
    typer.echo(f"table: {folder / 'pass-curve.md'}; picture: {folder / 'pass-curve.png'}")


@shell.command()
def collect(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    set_: SetOption = None,
) -> None:
    """Phase 1: sample answers and revisions, keep verified revisions -> RUN/collect/tuples.jsonl (resumable)."""
    from .stages.collect import generation_counter, run_collect
    from .evaluate import pct

    loaded = _load(recipe, set_)
    note_command("collect", recipe, set_)
    out = Path(loaded.run.output_dir) / "collect"
    typer.echo(f"collecting into {out}")

    def on_batch(b: int, n: int, s: dict) -> None:
        typer.echo(f"batch {b}/{n}  questions {s.questions_seen}  initial acc {pct(s.initial_accuracy, '%')}  "
                   f"revisions {s.revisions_tried}  kept {s.kept}  {s.elapsed_s:.0f}s")

    with long_work(same_command("collect", recipe, set_)):
        s = run_collect(loaded, out, on_batch=on_batch, on_finish=generation_counter(typer.echo))
    typer.echo(
        f"{'done' if s.done else 'stopped'}: {s.questions_seen} questions, initial accuracy "
        f"{pct(s.initial_accuracy, '%')}, {s.revisions_tried} revisions tried, {s.kept} kept; correction rate "
        f"{pct(s.correction_rate, '%')}, rephrase rate {pct(s.rephrase_rate, '%')}. Tuples: {out / 'tuples.jsonl'}"
    )
    if s.skipped_long_prompts:
        typer.echo(f"skipped {s.skipped_long_prompts} questions over data.max_prompt_tokens={loaded.data.max_prompt_tokens}")


@shell.command("run")
def run_(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    set_: SetOption = None,
    retrain: RetrainOption = False,
) -> None:
    """The whole method: collect -> SRT -> distill -> evaluate base / SRT / SD-Zero; skips finished stages."""
    from .pipeline import run_pipeline

    set_ = with_retrain(set_, retrain)
    loaded = _load(recipe, set_)
    note_command("run", recipe, set_)
    typer.echo(f"run directory: {loaded.run.output_dir}")
    with long_work(same_command("run", recipe, set_)):
        run_pipeline(loaded, log=typer.echo)
    typer.echo(f"table: {Path(loaded.run.output_dir) / 'results.md'}")


@shell.command()
def doctor(
    recipe: RecipeArg,
    n: Annotated[int, typer.Option("--n", help="Training (or validation) problems to sample; never the test split.")] = 32,
    out: Annotated[Path, typer.Option(help="Folder for doctor.md and doctor.json (not inside run.output_dir).")] = Path("doctor"),
    teacher: Annotated[Optional[str], typer.Option(
        help="The model phase 2's teacher will be (the fused SRT model) to measure beside the base; the verdict reads "
             "it. Default: RUN/srt/model when the recipe's run has finished SRT. 'none': the base only.")] = None,
    set_: SetOption = None,
) -> None:
    """Before a long run: can SD-Zero help this model on this data, and what will the run cost? (minutes, no training)"""
    from .doctor import run_doctor
    from .doctor.report import render

    loaded = _load(recipe, set_)
    with long_work("nothing was written into the run directory"):
        report = run_doctor(loaded, str(recipe), n=n, out_dir=out, log=typer.echo, teacher=teacher)
    typer.echo("")
    typer.echo(render(report, width=400))
    typer.echo(f"wrote {out / 'doctor.md'} and {out / 'doctor.json'}")


@shell.command()
def demo(
    quick: Annotated[bool, typer.Option("--quick", help="A small slice of the demo (a minute or two).")] = False,
    task: Annotated[str, typer.Option(help="inverse (default: hindsight can find the mistake) or chain (it cannot).")] = "inverse",
    out: Annotated[Path, typer.Option(help="Run directory (rerunning continues it).")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="run.seed and data.seed: the seed's own problems and sampling.")] = 0,
    set_: SetOption = None,
    retrain: RetrainOption = False,
) -> None:
    """The whole method on the built-in task and tiny model: table, plots and self-localisation."""
    from .demo.app import run_demo

    set_ = with_retrain(set_, retrain)
    with long_work(f"run the same command again to continue in {out}"):
        overrides = [f"run.seed={seed}", f"data.seed={seed}", *(set_ or [])]
        result = run_demo(out, quick=quick, overrides=overrides, log=typer.echo, task_name=task)
    typer.echo("")
    typer.echo(result.table)
    typer.echo(f"everything is in {result.run_dir}")


# a negative gold answer ("-5") is an argument, not an unknown option; `--` before TEXT works too
@shell.command(context_settings={"ignore_unknown_options": True})
def verify(
    text: Annotated[Optional[str], typer.Argument(help="Model output to grade.")] = None,
    answer: Annotated[Optional[str], typer.Argument(help="Reference answer; a negative one may be given as is (-5) or after `--`.")] = None,
    file: Annotated[Optional[Path], typer.Option(help="JSONL with fields response (or text) and answer.")] = None,
    kind: Annotated[str, typer.Option(help="math (TEXT and ANSWER, or --file) or code (--response-file and --tests-file).")] = "math",
    response_file: Annotated[Optional[Path], typer.Option(help="Code: a model's whole answer (text with a fenced block).")] = None,
    tests_file: Annotated[Optional[Path], typer.Option(help='Code: JSON {"inputs": [...], "outputs": [...]} or {"test": ..., "entry_point": ...}.')] = None,
    language: Annotated[str, typer.Option(help="Code: the language of an untagged block (python or cpp).")] = "python",
    timeout: Annotated[float, typer.Option(help="Code: wall and CPU seconds per run.")] = 2.0,
    allow_unisolated: Annotated[bool, typer.Option(help="Code: run the program even where this machine has no sandbox "
                                                   "(rlimits only; verifier.allow_unisolated_code).")] = False,
) -> None:
    """Grade an answer (or a JSONL file of answers) with the sympy verifier, or a program against its tests (--kind code)."""
    from .verifier import check, grade_file

    if kind == "code":
        _verify_code(response_file, tests_file, language, timeout, allow_unisolated)
        return
    if kind != "math":
        fail(f"--kind is {kind!r}; use math or code")
    if file is not None:
        from .configio import check_input_file

        try:
            graded = grade_file(check_input_file(file, "--file"))
        except (ValueError, FileNotFoundError) as err:
            fail(str(err))
        except OSError as err:
            fail(os_error(err))
        for i, v in enumerate(graded.verdicts, 1):
            typer.echo(f"{i}: {'correct' if v.score == 1.0 else 'wrong'}  extracted {v.extracted!r}  gold {v.gold!r}  ({v.reason})")
        typer.echo(f"{graded.correct}/{graded.n} correct, accuracy {graded.accuracy:.4f}")
        return
    if text is None or answer is None:
        fail("give TEXT and ANSWER, or --file preds.jsonl")
    verdict = check(text, answer)
    typer.echo(f"extracted: {verdict.extracted}")
    typer.echo(f"gold:      {verdict.gold}")
    typer.echo(f"verdict:   {'correct' if verdict.score == 1.0 else 'wrong'} ({verdict.reason})")


def _verify_code(response_file: Optional[Path], tests_file: Optional[Path], language: str, timeout: float,
                 allow_unisolated: bool) -> None:
    """`sdzero verify --kind code`: the isolation used first (one line), the reason on the line before last,
    the reward (1 or 0) last."""
    from .verifier import VerifierConfig, check
    from .verifier.code import parse_tests, sandbox_description

    if response_file is None or tests_file is None:
        fail("--kind code needs --response-file R (the model's answer) and --tests-file T (the tests as JSON)")
    try:
        response = response_file.read_text(encoding="utf-8")
        tests = tests_file.read_text(encoding="utf-8")
        parse_tests(tests)
        config = VerifierConfig(kind="code", language=language, timeout_s=timeout, allow_unisolated_code=allow_unisolated)
        verdict = check(response, tests, config)
        typer.echo(f"sandbox: {sandbox_description(config)}")
    except FileNotFoundError as err:
        fail(f"{err.filename} does not exist; give the path of a file.")
    except UnicodeDecodeError as err:
        fail(f"a file is not UTF-8 text ({err.reason}); re-save it as UTF-8.")
    except ValueError as err:
        fail(f"{tests_file}: {err}" if "tests" in str(err) else str(err))
    except RuntimeError as err:
        fail(str(err))
    typer.echo(f"tests:   {verdict.gold}")
    typer.echo(verdict.reason)
    typer.echo(f"{verdict.score:g}")


@shell.command()
def parity(
    model: Annotated[Optional[Path], typer.Option(help="A llama model folder (default: a seeded tiny llama written to a temporary folder).")] = None,
    dtype: Annotated[Optional[list[str]], typer.Option(help="float32 and/or bfloat16 (repeatable; default: both).")] = None,
    gpu: Annotated[Optional[bool], typer.Option("--gpu/--no-gpu", help="Compare the GPU too (default: when MLX has a working one).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for parity.md and parity.json.")] = None,
) -> None:
    """Backends vs a float64 numpy reference: teacher top-k, KL, losses, LoRA gradients, an AdamW step, greedy decoding."""
    import json
    import tempfile

    from .parity import TOLERANCE, format_report, report_json, run_parity
    from .demo.tinymodel import make_model_dir

    dtypes = dtype or ["float32", "bfloat16"]
    if any(d not in ("float32", "bfloat16") for d in dtypes):
        fail(f"--dtype takes float32 or bfloat16, got {dtypes}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = model or make_model_dir(Path(tmp) / "tiny", seed=0)
        try:
            report = run_parity(model_dir, dtypes, gpu=gpu, log=typer.echo)
        except (ValueError, RuntimeError, FileNotFoundError) as err:
            fail(str(err))
    text = format_report(report)
    typer.echo(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "parity.md").write_text(text + "\n")
        (out / "parity.json").write_text(json.dumps({**report_json(report), "tolerance": TOLERANCE}, indent=2) + "\n")
        typer.echo(f"wrote {out / 'parity.md'} and {out / 'parity.json'}")
    if not report.ok:
        raise typer.Exit(code=1)


@shell.command()
def info() -> None:
    """Versions, device and the BLAS in use."""
    from .platform.info import collect_info, format_info

    typer.echo(format_info(collect_info()))


def count_printer(total: int, every: int = 0):
    """on_progress(name, n) callback: a line every `every` finished generations (default: ~10 lines)."""
    every = every or max(total // 10, 1)
    done: dict[str, int] = {}

    def on_progress(name: str, n: int) -> None:
        before = done.get(name, 0)
        done[name] = before + n
        if done[name] // every > before // every or done[name] == total:
            typer.echo(f"  {name}: {done[name]}/{total} generations")

    return on_progress


@shell.command("eval")
def eval_(
    models: Annotated[list[str], typer.Argument(help="MODEL folder(s), or MODEL:ADAPTER; several make one table.")],
    data: Annotated[str, typer.Option(metavar="FILE|URI", help="Evaluation file (.jsonl/.json/.parquet), hf://owner/name/file, or a generated source (demo://inverse, rg://TASK?option=value).")],
    adapter: Annotated[Optional[list[str]], typer.Option(help="LoRA adapter folder per MODEL (repeatable).")] = None,
    field_problem: Annotated[str, typer.Option(help="Row field with the problem.")] = "problem",
    field_answer: Annotated[str, typer.Option(help="Row field with the reference answer.")] = "answer",
    field_id: Annotated[Optional[str], typer.Option(help="Row field with an id (row number if unset).")] = None,
    k: Annotated[int, typer.Option(help="Samples per problem for avg@k / pass@k (paper: 8).")] = 8,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (paper: 0.7).")] = 0.7,
    max_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 512,
    greedy: Annotated[bool, typer.Option(help="Also report greedy accuracy.")] = True,
    revise: Annotated[bool, typer.Option(help="Also run generate-then-revise (first/revised accuracy, correction rate).")] = False,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate the first N problems only (default: all of a file; "
                                                 f"{EVAL_GENERATED} of a generated source).")] = None,
    data_seed: DataSeedOption = 0,
    recipe: Annotated[Optional[Path], typer.Option(help="Take prompts (template, control phrases) and verifier settings from this recipe.")] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences sampled together.")] = 16,
    seed: int = 0,
    out: Annotated[Optional[Path], typer.Option(help="Write per-problem JSONL and summary.md/json here.")] = None,
) -> None:
    """avg@k, pass@k and greedy accuracy (and generate-then-revise) of one or several models."""
    from dataclasses import replace

    from .config import EvalConfig, FieldMap
    from .evaluate import EvalSettings, evaluate_models, generations_per_model, parse_model_specs, results_table
    from .recipe import load_recipe

    with long_work("files already in --out are complete (each is written whole), the rest is not there."):
        specs = parse_model_specs(models, adapter or [])
        config = EvalConfig(k=k, temperature=temperature, max_tokens=max_tokens, greedy=greedy, revise=revise)
        settings = EvalSettings(config, seed=seed, batch_size=batch_size)
        if recipe is not None:  # its prompts, verifier and longest prompt
            loaded = load_recipe(recipe)
            settings = replace(settings, prompts=loaded.prompts, verifier=loaded.verifier,
                               max_prompt_tokens=loaded.data.max_prompt_tokens)
        fields = FieldMap(problem=field_problem, answer=field_answer, id=field_id)
        examples = data_examples(data, fields, limit, data_seed, EVAL_GENERATED)
        typer.echo(f"{len(examples)} problems, {len(specs)} model(s), k={k}, T={temperature}")
        named, budgets = evaluate_models(specs, examples, settings, out,
                                         count_printer(generations_per_model(len(examples), config)))
    typer.echo(results_table(named, budgets))
    for name, results in named.items():
        if results[0].skipped_long_prompts:
            typer.echo(f"{name}: skipped {results[0].skipped_long_prompts} problems whose prompt does not fit "
                       "(--recipe's data.max_prompt_tokens, default 4096, or the model's context)")
    if out is not None:
        typer.echo(f"per-problem results and summary.md/json in {out}")


@shell.command()
def explain(
    model: Annotated[str, typer.Argument(help="Student MODEL folder.")],
    adapter: Annotated[Optional[str], typer.Option(help="Student LoRA adapter folder.")] = None,
    teacher: Annotated[Optional[str], typer.Option(help="Teacher model folder (default: MODEL without --adapter; SD-Zero's Reviser is the Generator's own weights).")] = None,
    teacher_adapter: Annotated[Optional[str], typer.Option(help="Teacher LoRA adapter folder.")] = None,
    problem: Annotated[Optional[str], typer.Option(help="One problem to explain.")] = None,
    response: Annotated[Optional[str], typer.Option(help="Response text to score (default: sample one from the student).")] = None,
    answer: Annotated[Optional[str], typer.Option(help="Reference answer: grades the response to pick sep(r).")] = None,
    reward: Annotated[Optional[float], typer.Option(help="Use this reward (0 or 1) instead of grading.")] = None,
    data: Annotated[Optional[str], typer.Option(metavar="FILE|URI", help="Explain one sampled response per problem of this file (or generated source, as eval's --data) instead.")] = None,
    field_problem: str = "problem",
    field_answer: str = "answer",
    limit: Annotated[int, typer.Option(help="Problems taken from --data.")] = 16,
    data_seed: DataSeedOption = 0,
    top_k: Annotated[Optional[int], typer.Option(help="Teacher top-k support for the KL (0 = full vocabulary); default: the recipe's distill.top_k.")] = None,
    kind: Annotated[Optional[str], typer.Option(help="The loss: reverse (paper), forward, mixed, jsd, k1 or k3 (distill.kl); default: the recipe's distill.kl.")] = None,
    forward_weight: Annotated[Optional[float], typer.Option(help="Weight of the forward KL when the kind is mixed; default: the recipe's distill.forward_weight.")] = None,
    top_n: Annotated[int, typer.Option(help="Tokens listed by KL.")] = 10,
    temperature: float = 0.7,
    max_tokens: int = 512,
    recipe: Annotated[Optional[Path], typer.Option(help="Take prompts, verifier and KL settings from this recipe (default: the default recipe's).")] = None,
    seed: int = 0,
    out: Annotated[Path, typer.Option(help="Output folder for HTML/PNG.")] = Path("explain"),
) -> None:
    """Self-localisation: per-token log p_student - log p_teacher and KL, as a coloured token strip."""
    from dataclasses import replace

    from .config import FieldMap, PromptConfig, SamplingConfig
    from . import explain as ex
    from .prompts import separators
    from .recipe import load_recipe
    from .stages.distill import DistillConfig
    from .verifier import VerifierConfig

    if (problem is None) == (data is None):
        fail("give --problem (one response) or --data (one sampled response per problem), not both")
    if problem is not None and reward is None and answer is None:
        fail("give --answer (to grade the response) or --reward 0/1 (to pick the control phrase)")
    try:
        prompts, verifier, distill = PromptConfig(), VerifierConfig(), DistillConfig()
        if recipe is not None:
            loaded = load_recipe(recipe)
            prompts, verifier, distill = loaded.prompts, loaded.verifier, loaded.distill
        # the KL that training used, unless asked for another
        asked = {"kind": kind, "forward_weight": forward_weight, "top_k": top_k}
        kl_settings = replace(distill.kl_settings, **{k: v for k, v in asked.items() if v is not None})
        if data is not None:  # before the models load: a bad --data fails at once
            examples = data_examples(data, FieldMap(problem=field_problem, answer=field_answer), limit, data_seed, limit)
        student, teacher_model, tok = ex.load_student_and_teacher(model, adapter, teacher, teacher_adapter)
        sampling = SamplingConfig(temperature=temperature, max_tokens=max_tokens)
        settings = ex.ExplainSettings(prompts, sampling, verifier, separators(tok, prompts), seed, kl_settings)
        if data is not None:
            reports = ex.explain_examples(student, tok, teacher_model, examples, settings)
            typer.echo(ex.explain_set_to_dir(reports, out))
            typer.echo(f"{len(reports)} responses: HTML/PNG per response, buckets.png and summary.md in {out}")
            return
        report = ex.explain_one(student, tok, teacher_model, problem, response, answer, reward, settings)
        page, png = ex.write_report(report, out)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        fail(str(err))
    except OSError as err:
        fail(os_error(err))
    typer.echo(f"reward {report.reward:g}; {len(report.kl)} tokens; KL share of top 5% tokens {ex.kl_concentration(report.kl):.3f}")
    for i, piece, k, d in ex.top_tokens(report, top_n):
        typer.echo(f"  #{i:<4} {piece!r:<16} KL {k:.4f}  log p_s - log p_t {d:+.3f}")
    typer.echo(f"wrote {page} and {png}")


@shell.command()
def plot(
    runs: Annotated[list[Path], typer.Argument(help="Run directories holding metrics.jsonl.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("runs.png"),
    label: Annotated[Optional[list[str]], typer.Option(help="Legend label per run (repeatable).")] = None,
) -> None:
    """Reward, KL, response length and tokens/s over steps; several runs overlaid."""
    from .plots import plot_runs

    try:
        plot_runs(runs, out, label)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    typer.echo(f"wrote {out}")


def distributed_commands() -> tuple[str, ...]:
    """Commands that train data-parallel under mlx.launch (distributed.py): every training stage, and info."""
    from .stages import training_stages

    return tuple(s.name for s in training_stages()) + ("info",)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    import signal

    from .platform.blas import reexec_with_fast_blas

    # SIGTERM (kill, a job scheduler) ends a command like Ctrl-C: the same hint, the same finished work kept
    signal.signal(signal.SIGTERM, _terminate)

    if sys.argv[1:2] == ["verify"]:  # verify needs no BLAS nor the stages: no re-exec (half its cold start)
        shell()
        return
    reexec_with_fast_blas(sys.argv)
    from .platform.threads import apply_blas_threads

    apply_blas_threads()
    from .platform.distributed import world

    if sys.argv[1:2] and not sys.argv[1].startswith("-") and world() > 1 and sys.argv[1] not in distributed_commands():
        typer.secho(f"error: sdzero {sys.argv[1]} runs as one process; under mlx.launch use one of "
                    f"{', '.join(distributed_commands()[:-1])}.", fg=typer.colors.RED, err=True)
        raise SystemExit(2)
    build_app()()


if __name__ == "__main__":
    main()

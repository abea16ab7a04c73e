"""The `sdzero` command: a thin typer shell over the package's functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    help="SD-Zero on MLX: self-revision training and on-policy self-distillation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a recipe field, e.g. --set optim.learning_rate=3e-4 (repeatable)."),
]


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def step_printer(total: int):
    """A progress line per optimizer step (long work must show progress)."""

    def on_step(step: int, values: dict) -> None:
        typer.echo(
            f"step {step}/{total}  reward {values['reward']:.3f}  kl {values['kl']:.4f}  "
            f"len {values['response_tokens']:.0f}  {values['step_s']:.1f}s/step  "
            f"{values['trained_tokens_per_s']:.0f} trained tok/s  peak {values['peak_memory_gb']:.2f} GB"
        )

    return on_step


@app.command()
def distill(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    resume: Annotated[Optional[Path], typer.Option(help="Run directory to continue.")] = None,
    set_: SetOption = None,
) -> None:
    """Phase 2: on-policy self-distillation of the Reviser into the Generator (LoRA)."""
    from .config import load_recipe
    from .distill import run_distill

    overrides = list(set_ or [])
    if resume is not None:
        overrides.append(f"run.output_dir={resume}")
    try:
        loaded = load_recipe(recipe, overrides)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    run_dir = Path(loaded.run.output_dir)
    typer.echo(f"run directory: {run_dir}")
    try:
        state = run_distill(loaded, run_dir, resume=resume is not None, on_step=step_printer(loaded.distill.steps))
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        fail(str(err))
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted; continue with: sdzero distill {recipe} --resume {run_dir}", err=True)
        raise typer.Exit(code=130)
    typer.echo(
        f"done: {state.step} steps, {state.generations} generations, {state.sampled_tokens} sampled tokens. "
        f"Adapters: {run_dir / 'adapters'}"
    )


@app.command()
def verify(
    text: Annotated[Optional[str], typer.Argument(help="Model output to grade.")] = None,
    answer: Annotated[Optional[str], typer.Argument(help="Reference answer.")] = None,
    file: Annotated[Optional[Path], typer.Option(help="JSONL with fields response (or text) and answer.")] = None,
) -> None:
    """Grade an answer (or a JSONL file of answers) with the sympy verifier."""
    from .verifier import check, grade_file

    if file is not None:
        try:
            graded = grade_file(file)
        except (ValueError, FileNotFoundError) as err:
            fail(str(err))
        typer.echo(f"{graded.correct}/{graded.n} correct, accuracy {graded.accuracy:.4f}")
        return
    if text is None or answer is None:
        fail("give TEXT and ANSWER, or --file preds.jsonl")
    verdict = check(text, answer)
    typer.echo(f"extracted: {verdict.extracted}")
    typer.echo(f"gold:      {verdict.gold}")
    typer.echo(f"verdict:   {'correct' if verdict.score == 1.0 else 'wrong'} ({verdict.reason})")


@app.command()
def info() -> None:
    """Versions, device and the BLAS in use."""
    from .info import collect_info, format_info

    typer.echo(format_info(collect_info()))


def main() -> None:
    from .blas import reexec_with_fast_blas

    reexec_with_fast_blas(sys.argv)
    app()


if __name__ == "__main__":
    main()

"""The paper's evaluation protocols: avg@k / pass@k / greedy accuracy, and generate-then-revise.

avg@k: k samples per problem at a temperature (paper: k = 8, T = 0.7); the mean reward over all
  samples, i.e. the mean over problems of c_i / k.
pass@k: the unbiased estimator 1 - C(n - c, k) / C(n, k) per problem (Chen et al. 2021), averaged;
  with n = k samples it is the share of problems with at least one correct sample.
greedy: one temperature-0 answer per problem.
Generate-then-revise (the paper's Table 9): one first attempt y1 at the temperature (in evaluate_model
  the first of the problem's k samples, so it is drawn once), r1 = verify(y1);
  the revision y2 continues `chat(x) + y1 + sep(r1)` in the same assistant turn (token ids only, the
  layout of every phase), and r2 = verify(y2). Correction rate = P(r2 = 1 | r1 = 0), degradation
  rate = P(r2 = 0 | r1 = 1).
Grading uses the training verifier, so the metric is the reward. Token counts are sampled tokens
without the end-of-turn token, as in the distillation budget.
Problems whose prompt does not fit (data.max_prompt_tokens, or the model's context less the answers:
lengths.py) are skipped and counted (`skipped_long_prompts`); n_problems counts the evaluated ones.
`--out` is written under its folder's lock (rundir.py), every file atomically (atomic.py).
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

from .atomic import write_json, write_lines, write_text
from .config import DataConfig, EvalConfig, PromptConfig, SamplingConfig
from .lengths import fitting, prompt_limit
from .writable import check_output_dir
from .prompts import prompt_ids, separators
from .rollout import Completion, generate_completions
from .seeds import derive_seed
from .types import Budget, Example, TrainingState
from .verifier import VerifierConfig, verify_batch

Progress = Optional[Callable[[int], None]]  # called with the number of generations just finished

# Which samples an evaluation draws for given settings and seed; a cached evaluation (tasks.evaluate_cached)
# is reused only under the same. 3: sampled in waves with the greedy answer as one more row per problem
# (waves.py); 2: revise starts from the first of the k samples (ddc5190) and a batch's prompts are prefilled
# together (9f7dc13); 1 (no field): before.
EVAL_PROTOCOL = 3


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n - c, k) / C(n, k).

    Example: pass_at_k(5, 2, 2) == 1 - 3/10 == 0.7
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}.")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@dataclass(frozen=True)
class ProblemRow:
    """One problem's samples: rewards, token counts and texts, aligned."""

    id: str
    answer: str
    rewards: tuple[float, ...]
    tokens: tuple[int, ...]
    texts: tuple[str, ...]
    finish_reasons: tuple[str, ...]
    greedy_reward: Optional[float] = None
    greedy_tokens: Optional[int] = None
    greedy_text: Optional[str] = None


@dataclass(frozen=True)
class EvalResult:
    avg_at_k: float
    pass_at_k: float
    greedy_accuracy: Optional[float]  # None when greedy decoding was not run
    mean_tokens: float  # over the k sampled answers
    k: int
    temperature: float
    n_problems: int
    generations: int  # sampled sequences, greedy included (budget accounting)
    sampled_tokens: int
    rows: tuple[ProblemRow, ...]
    skipped_long_prompts: int = 0  # problems left out: their prompt does not fit


@dataclass(frozen=True)
class EvalSettings:
    """How a model is evaluated, besides the model and the problems: the protocol (eval), the prompts and the
    verifier, the seed, the rows sampled at once and the longest prompt. `of(recipe)`: a recipe's."""

    eval: EvalConfig
    prompts: PromptConfig = PromptConfig()
    verifier: VerifierConfig = VerifierConfig()
    seed: int = 0
    batch_size: int = 16  # sequences sampled together
    max_prompt_tokens: int = DataConfig.max_prompt_tokens

    @classmethod
    def of(cls, recipe) -> "EvalSettings":
        return cls(recipe.eval, recipe.prompts, recipe.verifier, recipe.run.seed, recipe.sampling.batch_size,
                   recipe.data.max_prompt_tokens)

    @property
    def sampling(self) -> SamplingConfig:
        """The rollout settings of an evaluation; top_p 1 as in the paper."""
        return SamplingConfig(temperature=self.eval.temperature, top_p=1.0, max_tokens=self.eval.max_tokens,
                              batch_size=self.batch_size)


def _check_examples(examples: Sequence[Example]) -> None:
    if not examples:
        raise ValueError("No examples to evaluate; check --data / --limit (or data.eval_size).")


def evaluate_examples(
    model, tokenizer, examples: Sequence[Example], settings: EvalSettings, on_progress: Progress = None,
) -> EvalResult:
    """avg@k, pass@k (k samples at eval.temperature) and greedy accuracy over `examples`."""
    return _evaluate_examples(model, tokenizer, examples, settings, on_progress)[0]


def _evaluate_examples(
    model, tokenizer, examples: Sequence[Example], settings: EvalSettings, on_progress: Progress,
) -> tuple[EvalResult, list[Completion], list[float]]:
    """evaluate_examples, with the k samples per problem and their rewards (generate-then-revise reuses them)."""
    _check_examples(examples)
    config, verifier = settings.eval, settings.verifier
    k = config.k
    ids = [prompt_ids(tokenizer, ex.problem, settings.prompts) for ex in examples]
    # sample j of problem i is entry i * k + j: all samples go through one batched generator, and the k samples
    # of a problem (and its greedy answer, one more row) share one prefill of its prompt
    drawn = generate_completions(model, tokenizer, ids, settings.sampling, settings.seed, on_progress,
                                 copies=k, greedy_copy=config.greedy)
    per = k + config.greedy
    sampled = [c for i, c in enumerate(drawn) if i % per < k]
    texts = [tokenizer.decode(list(c.ids)) for c in sampled]
    golds = [ex.answer for ex in examples for _ in range(k)]
    greedy = greedy_texts = greedy_rewards = None
    if config.greedy:
        greedy = drawn[k::per]
        greedy_texts = [tokenizer.decode(list(c.ids)) for c in greedy]
        texts_all, golds_all = texts + greedy_texts, golds + [ex.answer for ex in examples]
    else:
        texts_all, golds_all = texts, golds
    rewards_all = verify_batch(texts_all, golds_all, verifier)
    rewards = rewards_all[: len(texts)]
    if config.greedy:
        greedy_rewards = rewards_all[len(texts):]

    rows = []
    for i, ex in enumerate(examples):
        sl = slice(i * k, (i + 1) * k)
        rows.append(
            ProblemRow(
                id=ex.id,
                answer=ex.answer,
                rewards=tuple(rewards[sl]),
                tokens=tuple(len(c.ids) for c in sampled[sl]),
                texts=tuple(texts[sl]),
                finish_reasons=tuple(c.finish_reason for c in sampled[sl]),
                greedy_reward=None if greedy is None else greedy_rewards[i],
                greedy_tokens=None if greedy is None else len(greedy[i].ids),
                greedy_text=None if greedy is None else greedy_texts[i],
            )
        )
    n = len(examples)
    sampled_tokens = sum(len(c.ids) for c in sampled) + (sum(len(c.ids) for c in greedy) if greedy else 0)
    return EvalResult(
        avg_at_k=sum(rewards) / len(rewards),
        pass_at_k=sum(pass_at_k(k, sum(r >= 0.5 for r in row.rewards), k) for row in rows) / n,
        greedy_accuracy=None if greedy is None else sum(greedy_rewards) / n,
        mean_tokens=sum(len(c.ids) for c in sampled) / len(sampled),
        k=k,
        temperature=config.temperature,
        n_problems=n,
        generations=len(sampled) + (len(greedy) if greedy else 0),
        sampled_tokens=sampled_tokens,
        rows=tuple(rows),
    ), sampled, rewards


# -- generate-then-revise --------------------------------------------------------------------


@dataclass(frozen=True)
class RevisionRates:
    first_accuracy: float
    revised_accuracy: float
    correction_rate: Optional[float]  # wrong -> right / wrong; None without wrong first attempts
    degradation_rate: Optional[float]  # right -> wrong / right; None without right first attempts
    n_first_wrong: int
    n_first_right: int
    corrected: int
    degraded: int


def revision_rates(first: Sequence[float], revised: Sequence[float]) -> RevisionRates:
    """Accuracies and transition rates of aligned first / revised rewards (1.0 right, 0.0 wrong).

    Example: revision_rates([0, 0, 1, 1], [1, 0, 1, 0]) has correction 1/2 and degradation 1/2.
    """
    if len(first) != len(revised) or not first:
        raise ValueError(f"need equal, non-empty reward lists; got {len(first)} first and {len(revised)} revised.")
    pairs = [(f >= 0.5, r >= 0.5) for f, r in zip(first, revised)]
    wrong = sum(not f for f, _ in pairs)
    right = len(pairs) - wrong
    corrected = sum(not f and r for f, r in pairs)
    degraded = sum(f and not r for f, r in pairs)
    return RevisionRates(
        first_accuracy=right / len(pairs),
        revised_accuracy=sum(r for _, r in pairs) / len(pairs),
        correction_rate=corrected / wrong if wrong else None,
        degradation_rate=degraded / right if right else None,
        n_first_wrong=wrong,
        n_first_right=right,
        corrected=corrected,
        degraded=degraded,
    )


@dataclass(frozen=True)
class ReviseRow:
    id: str
    answer: str
    first_reward: float
    revised_reward: float
    first_tokens: int
    revised_tokens: int
    first_text: str
    revised_text: str


@dataclass(frozen=True)
class ReviseResult:
    first_accuracy: float
    revised_accuracy: float
    correction_rate: Optional[float]
    degradation_rate: Optional[float]
    first_tokens: float  # mean tokens of first attempts
    revised_tokens: float  # mean tokens of revisions (after sep(r))
    n_problems: int
    n_first_wrong: int
    n_first_right: int
    corrected: int
    degraded: int
    temperature: float
    generations: int
    sampled_tokens: int
    rows: tuple[ReviseRow, ...]
    skipped_long_prompts: int = 0


def generate_then_revise(
    model, tokenizer, examples: Sequence[Example], settings: EvalSettings, on_progress: Progress = None,
    first: Optional[tuple[Sequence[Completion], Sequence[float]]] = None,
) -> ReviseResult:
    """First attempt, grade, revise after sep(r) in the same turn, grade again (paper's Table 9).

    `first`: first attempts already drawn at config.temperature and their rewards, one per example
    (evaluate_model passes the first of its k samples); None: drawn here with `seed`. Either way the
    revisions are drawn with the seed derived from `seed`; generations and sampled tokens count what
    was drawn here."""
    _check_examples(examples)
    config, verifier, prompts, seed, sampling = (settings.eval, settings.verifier, settings.prompts, settings.seed,
                                                 settings.sampling)
    seps = separators(tokenizer, prompts)
    golds = [ex.answer for ex in examples]
    ids = [prompt_ids(tokenizer, ex.problem, prompts) for ex in examples]
    if first is None:
        first = generate_completions(model, tokenizer, ids, sampling, seed, on_progress)
        first_texts = [tokenizer.decode(list(c.ids)) for c in first]
        first_rewards = verify_batch(first_texts, golds, verifier)
        drawn = first
    else:
        first, first_rewards = list(first[0]), list(first[1])
        if len(first) != len(examples) or len(first_rewards) != len(examples):
            raise ValueError(f"need one first attempt and reward per example; got {len(first)} and "
                             f"{len(first_rewards)} for {len(examples)} examples.")
        first_texts = [tokenizer.decode(list(c.ids)) for c in first]
        drawn = []
    # the reviser reads y1 without its end-of-turn token, exactly as in phases 1 and 2
    revise_ids = [p + c.ids + seps.for_reward(r) for p, c, r in zip(ids, first, first_rewards)]
    revised = generate_completions(model, tokenizer, revise_ids, sampling, derive_seed(seed, "revision", 1), on_progress)
    revised_texts = [tokenizer.decode(list(c.ids)) for c in revised]
    revised_rewards = verify_batch(revised_texts, golds, verifier)

    rates = revision_rates(first_rewards, revised_rewards)
    rows = tuple(
        ReviseRow(ex.id, ex.answer, f, r, len(c1.ids), len(c2.ids), t1, t2)
        for ex, f, r, c1, c2, t1, t2 in zip(examples, first_rewards, revised_rewards, first, revised, first_texts, revised_texts)
    )
    n = len(examples)
    first_tok = sum(len(c.ids) for c in first)
    revised_tok = sum(len(c.ids) for c in revised)
    return ReviseResult(
        **asdict(rates),
        first_tokens=first_tok / n,
        revised_tokens=revised_tok / n,
        n_problems=n,
        temperature=config.temperature,
        generations=len(drawn) + n,
        sampled_tokens=sum(len(c.ids) for c in drawn) + revised_tok,
        rows=rows,
    )


# -- reporting -------------------------------------------------------------------------------

AnyResult = Union[EvalResult, ReviseResult]


def write_rows_jsonl(result: AnyResult, path: str | Path) -> Path:
    """Per-problem results, one JSON object per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_lines(path, (json.dumps(asdict(row), ensure_ascii=False) for row in result.rows))
    return path


def summary(result: AnyResult) -> dict:
    """The result without its per-problem rows, as plain JSON-able values."""
    d = asdict(result)
    d.pop("rows")
    d["kind"] = "revise" if isinstance(result, ReviseResult) else "sample"
    return d


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def results_records(named_results: dict, budgets: Optional[Mapping[str, Budget | TrainingState]] = None) -> list[dict]:
    """One JSON record per name: {"name", "sample": summary?, "revise": summary?, "budget": ...?}."""
    records = []
    for name, value in named_results.items():
        rec: dict = {"name": name}
        for res in _as_list(value):
            s = summary(res)
            rec[s.pop("kind")] = s
        if budgets and budgets.get(name):
            rec["budget"] = asdict(budgets[name])
        records.append(rec)
    return records


def pct(x: Optional[float], sign: str = "") -> str:
    """A share as a percentage with one decimal ("-" when not measured); the one formatter of shares."""
    return "-" if x is None else f"{100 * x:.1f}{sign}"


def _num(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.0f}"


def results_table(named_results: dict, budgets: Optional[Mapping[str, Budget | TrainingState]] = None) -> str:
    """A Markdown comparison table, one row per name.

    Values are an EvalResult, a ReviseResult, or a list of both (one model evaluated both ways).
    `budgets` maps a name to what its training spent (types.Budget, or a TrainingState),
    shown beside accuracy when given. Accuracies are percentages; "-" marks what was not measured.
    """
    records = results_records(named_results, budgets)
    ks = {r["sample"]["k"] for r in records if "sample" in r}
    k = str(ks.pop()) if len(ks) == 1 else "k"
    cols: list[tuple[str, Callable[[dict], str]]] = [("model", lambda r: r["name"])]
    if any("sample" in r for r in records):
        s = lambda r, key: r.get("sample", {}).get(key)  # noqa: E731
        cols += [
            ("n", lambda r: str(s(r, "n_problems") or r.get("revise", {}).get("n_problems", "-"))),
            (f"avg@{k}", lambda r: pct(s(r, "avg_at_k"))),
            (f"pass@{k}", lambda r: pct(s(r, "pass_at_k"))),
            ("greedy", lambda r: pct(s(r, "greedy_accuracy"))),
            ("tokens", lambda r: _num(s(r, "mean_tokens"))),
        ]
    if any("revise" in r for r in records):
        v = lambda r, key: r.get("revise", {}).get(key)  # noqa: E731
        if not any("sample" in r for r in records):
            cols.append(("n", lambda r: str(v(r, "n_problems"))))
        cols += [
            ("first", lambda r: pct(v(r, "first_accuracy"))),
            ("revised", lambda r: pct(v(r, "revised_accuracy"))),
            ("correction", lambda r: pct(v(r, "correction_rate"))),
            ("degradation", lambda r: pct(v(r, "degradation_rate"))),
            ("first tok", lambda r: _num(v(r, "first_tokens"))),
            ("revised tok", lambda r: _num(v(r, "revised_tokens"))),
        ]
    if any("budget" in r for r in records):
        b = lambda r, key: r.get("budget", {}).get(key)  # noqa: E731
        cols += [
            ("train gens", lambda r: _num(b(r, "generations"))),
            ("train sampled tok", lambda r: _num(b(r, "sampled_tokens"))),
            ("train trained tok", lambda r: _num(b(r, "trained_tokens"))),
        ]
    lines = ["| " + " | ".join(name for name, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in records:
        lines.append("| " + " | ".join(fn(r) for _, fn in cols) + " |")
    return "\n".join(lines) + "\n"


def write_summary(named_results: dict, out_dir: str | Path,
                  budgets: Optional[Mapping[str, Budget | TrainingState]] = None) -> tuple[Path, Path]:
    """summary.md (the table) and summary.json (the records) in out_dir; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "summary.md", out / "summary.json"
    write_text(md, results_table(named_results, budgets))
    write_json(js, results_records(named_results, budgets))
    return md, js


# -- several models, one table ---------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the row label
    path: str  # model folder or Hub id
    adapter: Optional[str] = None  # mlx-lm adapter folder


def parse_model_specs(models: Sequence[str], adapters: Sequence[str] = ()) -> list[ModelSpec]:
    """MODEL or MODEL:ADAPTER arguments, or MODELs paired one-to-one with --adapter options.

    Example: parse_model_specs(["m", "m:runs/a/adapters"]) labels them "m" and "m:a".
    """
    if not models:
        raise ValueError("Give at least one MODEL (a model folder, optionally MODEL:ADAPTER).")
    if adapters and (len(adapters) != len(models) or any(":" in m for m in models)):
        raise ValueError(
            f"Got {len(models)} models and {len(adapters)} --adapter options; give one --adapter per MODEL, "
            "or write MODEL:ADAPTER arguments instead."
        )
    pairs = list(zip(models, adapters)) if adapters else [tuple(m.split(":", 1)) if ":" in m else (m, None) for m in models]
    specs = []
    for path, adapter in pairs:
        name = Path(path).name or path
        if adapter:
            a = Path(adapter)
            name += ":" + (a.parent.name if a.name == "adapters" else a.name)
        specs.append(ModelSpec(name, path, adapter or None))
    seen: set[str] = set()
    for i, s in enumerate(specs):  # keep labels unique: fall back to the full argument
        if s.name in seen:
            specs[i] = ModelSpec(f"{s.path}:{s.adapter}" if s.adapter else s.path, s.path, s.adapter)
        seen.add(specs[i].name)
    return specs


def adapter_budget(adapter: Optional[str]) -> Optional[TrainingState]:
    """Training budget of the run an adapter came from (RUN/adapters -> RUN/metrics.jsonl)."""
    if not adapter:
        return None
    from .metrics import last_budget

    return last_budget(adapter) or last_budget(Path(adapter).parent)


def evaluate_model(
    model, tokenizer, examples: Sequence[Example], settings: EvalSettings, on_progress: Progress = None,
) -> list[AnyResult]:
    """The protocol for one model: avg@k / pass@k / greedy, then generate-then-revise when eval.revise.

    Problems whose prompt does not fit are left out and counted in each result's skipped_long_prompts."""
    config, prompts, max_prompt_tokens = settings.eval, settings.prompts, settings.max_prompt_tokens
    # what follows the prompt: an answer, and with revise a cue and a revision (a cue is a short phrase)
    after = config.max_tokens
    if config.revise:
        seps = separators(tokenizer, prompts)
        after += config.max_tokens + max(len(seps.right), len(seps.wrong))
    fit, skipped = fitting(tokenizer, examples, prompts, prompt_limit(model, max_prompt_tokens, after))
    if examples and not fit:
        raise ValueError(f"All {len(examples)} problems have prompts too long for max_prompt_tokens={max_prompt_tokens} "
                         "or the model's context (less the answer's max_tokens); nothing to evaluate.")
    sampled_result, sampled, rewards = _evaluate_examples(model, tokenizer, fit, settings, on_progress)
    results: list[AnyResult] = [sampled_result]
    if config.revise:  # the first attempts are the first of each problem's k samples: drawn once, not twice
        k = config.k
        results.append(generate_then_revise(model, tokenizer, fit, settings, on_progress,
                                            first=(sampled[::k], rewards[::k])))
    return [replace(r, skipped_long_prompts=skipped) for r in results]


def evaluate_models(
    specs: Sequence[ModelSpec],
    examples: Sequence[Example],
    settings: EvalSettings,
    out_dir: Optional[str | Path] = None,
    on_progress: Optional[Callable[[str, int], None]] = None,
) -> tuple[dict[str, list[AnyResult]], dict[str, TrainingState]]:
    """Evaluate each model (and generate-then-revise when eval.revise) on the same examples.

    Returns (named results, training budgets by name). With out_dir, writes OUT/NAME/samples.jsonl,
    OUT/NAME/revise.jsonl, and OUT/summary.md + summary.json.
    """
    from .modeling import check_model_path
    from .rundir import RunDir

    _check_examples(examples)
    for spec in specs:  # every model before the first generation
        check_model_path(spec.path, spec.adapter)
    if out_dir is not None:  # before any generation: results that cannot be written are lost work
        for spec in specs:
            check_output_dir(Path(out_dir) / spec.name.replace("/", "_").replace(":", "__"), "--out")
        check_output_dir(out_dir, "--out")
    with RunDir(out_dir).writing() if out_dir is not None else contextlib.nullcontext():  # one writer of --out
        return _evaluate_models(specs, examples, settings, out_dir, on_progress)


def _evaluate_models(specs, examples, settings: EvalSettings, out_dir, on_progress):
    import mlx.core as mx

    from .config import ModelConfig
    from .modeling import load_model

    named: dict[str, list[AnyResult]] = {}
    budgets: dict[str, TrainingState] = {}
    for spec in specs:
        progress = (lambda n, s=spec.name: on_progress(s, n)) if on_progress else None
        model, tokenizer = load_model(ModelConfig(spec.path), adapter_path=spec.adapter)
        results = evaluate_model(model, tokenizer, examples, settings, progress)
        named[spec.name] = results
        budget = adapter_budget(spec.adapter)
        if budget:
            budgets[spec.name] = budget
        if out_dir is not None:
            sub = Path(out_dir) / spec.name.replace("/", "_").replace(":", "__")
            for res in results:
                write_rows_jsonl(res, sub / ("revise.jsonl" if isinstance(res, ReviseResult) else "samples.jsonl"))
        del model, tokenizer
        mx.clear_cache()
    if out_dir is not None:
        write_summary(named, out_dir, budgets)
    return named, budgets


def generations_per_model(n_problems: int, config: EvalConfig) -> int:
    """Sequences evaluate_models samples per model (for progress bars)."""
    return n_problems * (config.k + int(config.greedy) + int(config.revise))  # revise reuses a sample

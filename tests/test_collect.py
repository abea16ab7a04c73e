"""Phase-1 collection: cleaning rules, the keep rule, a scripted model's collection, resume."""

import json
from dataclasses import replace

import pytest
import yaml

from sdzero_mlx.stages.collect import (
    read_summary,
    CleanRules, RevisionTuple, clean_tuple, load_tuples, opener_length, run_collect, select_tuples, strip_opener,
    trim_repeating_tail,
)
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.data import make_splits
from sdzero_mlx.demo.tinymodel import build_tokenizer

from scripted import scripted_model_dir, write_data


def ids(s: str) -> tuple[int, ...]:
    """Hand-written strings as ids, one per character, so expectations can be read off the text."""
    return tuple(ord(c) for c in s)


def text(t) -> str:
    return "".join(map(chr, t))


# -- cleaning rules on hand-written strings --------------------------------------------------


def test_repeating_tail_is_cut_to_one_copy():
    loop = "So 3 + 4 = 7.\n" + "I will check again. " * 6 + "I will ch"
    assert text(trim_repeating_tail(ids(loop), 3, 16)) == "So 3 + 4 = 7.\nI will check again. "
    assert text(trim_repeating_tail(ids("ok" + "!" * 30), 3, 16)) == "ok!"
    # one character period, long enough: cut; short runs of digits or newlines are real text
    assert text(trim_repeating_tail(ids("x = 1000"), 3, 16)) == "x = 1000"
    assert text(trim_repeating_tail(ids("a\n\n\nb"), 3, 16)) == "a\n\n\nb"
    # two copies are not a loop (3 needed); three are
    two = "The answer is 7. " * 2
    assert text(trim_repeating_tail(ids(two), 3, 16)) == two
    assert text(trim_repeating_tail(ids("The answer is 7. " * 3), 3, 16)) == "The answer is 7. "


def test_sycophantic_openers_are_cut_and_plain_text_is_kept():
    cases = {
        "You're absolutely right — the sum is 7.": "the sum is 7.",
        "Good catch! You are right, let me redo it: 3 + 4 = 7": "let me redo it: 3 + 4 = 7",
        "Thank you for pointing that out. 3 + 4 = 7": "3 + 4 = 7",
        "You are right to question this step. Recompute: 7": "Recompute: 7",
        "  Great question. The answer is 7": "The answer is 7",
        "The answer is right there: 7": "The answer is right there: 7",
        "Let me redo it. You're right that 3 + 4 = 7.": "Let me redo it. You're right that 3 + 4 = 7.",
    }
    for before, after in cases.items():
        assert text(strip_opener(ids(before), text)) == after, before
    assert opener_length("No opener here.") == 0


def test_opener_cut_on_real_token_boundaries():
    tok = build_tokenizer()
    enc = lambda s: tuple(tok.encode(s, add_special_tokens=False).ids)  # noqa: E731
    dec = lambda t: tok.decode(list(t), skip_special_tokens=False)  # noqa: E731
    y = enc("You're absolutely right. So 3 + 4 = 7")
    cut = strip_opener(y, dec)
    # " So" is one token: the cut keeps it whole, so the opener's last space stays (never re-tokenised)
    assert cut == y[len(y) - len(cut):] and dec(cut) == " So 3 + 4 = 7"
    # an opener that ends inside a token cannot be cut from the ids: the tuple is dropped (None)
    chunks = {1: "You're right", 2: "! Th", 3: "e answer is 7"}
    assert strip_opener((1, 2, 3), lambda t: "".join(chunks[i] for i in t)) is None


def tuple_(qid="q", y_init="\\boxed{5}", y_rev="\\boxed{7}", r_init=0.0, stop=3):
    return RevisionTuple(id=qid, problem="p", answer="7", prompt_ids=(1, 2), y_init=ids(y_init), r_init=r_init,
                         phrase="P", sep_ids=(9,), y_rev=ids(y_rev), rev_stop=stop, y_rev_text=y_rev)


def test_clean_tuple_trims_both_answers_and_gives_a_trimmed_revision_a_stop():
    raw = tuple_(y_init="3 + 4 = 8" + " hmm" * 10, y_rev="Good catch! \\boxed{7}" + " ok." * 10, stop=None)
    t = clean_tuple(raw, CleanRules(True, 3, 16), text, eos_id=3)
    assert text(t.y_init) == "3 + 4 = 8 hmm" and t.y_init_text == "3 + 4 = 8 hmm"
    assert text(t.y_rev) == "\\boxed{7} ok." and t.rev_stop == 3 and t.rev_target == t.y_rev + (3,)
    assert t.cleaned == ("trimmed_init", "trimmed_rev", "opener")
    assert clean_tuple(raw, CleanRules(False), text, 3) is raw


def test_select_keeps_exactly_verified_non_duplicates():
    a, b, c = tuple_("q1"), tuple_("q1", y_rev="\\boxed{7}."), tuple_("q2")
    cands = [a, None, b, a, c, tuple_("q3", y_rev="\\boxed{6}")]
    seen = {c.key}  # q2's tuple was kept in an earlier batch
    kept, counts = select_tuples(cands, [1.0, 1.0, 1.0, 1.0, 1.0, 0.0], seen)
    assert kept == [a, b]
    assert counts == {"verified": 4, "kept": 2, "duplicate": 2, "dropped_unclean": 1}
    assert seen == {a.key, b.key, c.key}


# -- a scripted model: the kept tuples are known by hand -------------------------------------


@pytest.fixture(scope="module")
def scripted_dir(tmp_path_factory):
    return scripted_model_dir(tmp_path_factory)


def collect_recipe(scripted_dir, tmp_path, **collect):
    data = write_data(tmp_path / "scripted.jsonl")
    raw = {
        "model": {"path": str(scripted_dir)},
        "data": {"source": str(data), "fields": {"id": "id"}, "phase1_size": 10, "phase2_size": 8, "eval_size": 8},
        "sampling": {"temperature": 0.0, "max_tokens": 12, "batch_size": 16},
        "distill": {"questions_per_step": 4, "max_teacher_tokens": 128},
        "collect": {"questions_per_batch": 4, **collect},
        "run": {"output_dir": str(tmp_path / "run"), "seed": 1},
    }
    path = tmp_path / "collect.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_recipe(path)


def test_collection_keeps_exactly_the_verified_revisions(scripted_dir, tmp_path):
    recipe = collect_recipe(scripted_dir, tmp_path)
    phase1 = make_splits(recipe.data).phase1
    summary = run_collect(recipe, tmp_path / "c")
    rows = load_tuples(tmp_path / "c" / "tuples.jsonl")
    # by hand: answer 7 -> rephrased \boxed{7} kept; 8 -> restarted \boxed{8} kept; others: nothing.
    # Greedy sampling makes the k = 3 revisions identical: one kept, two duplicates.
    n7 = sum(q.answer == "7" for q in phase1)
    n8 = sum(q.answer == "8" for q in phase1)
    assert n7 and n8 and n7 + n8 < len(phase1)
    assert sorted(r.id for r in rows) == sorted(q.id for q in phase1 if q.answer in ("7", "8"))
    for r in rows:
        assert r.y_rev_text == ("\\boxed{7}" if r.answer == "7" else "\\boxed{8}")
        assert r.r_init == (1.0 if r.answer == "7" else 0.0)
        assert r.phrase == (recipe.prompts.phrase_right if r.answer == "7" else recipe.prompts.phrase_wrong)
        assert r.y_init_text == "\\boxed{7}" and r.rev_stop is not None
    n = len(phase1)
    assert summary.questions_seen == n and summary.initial_accuracy == pytest.approx(n7 / n)
    assert summary.revisions_tried == 3 * n and summary.kept == n7 + n8
    assert summary.counters.duplicate == 2 * (n7 + n8)
    assert summary.correction_rate == pytest.approx(n8 / (n - n7))
    assert summary.rephrase_rate == 1.0
    assert summary.generations == n + 3 * n and summary.done
    assert json.loads((tmp_path / "c" / "summary.json").read_text()) == summary.to_json()
    assert read_summary(tmp_path / "c") == summary

    # rephrasing off: correct answers get no revisions; a target stops early
    off = run_collect(collect_recipe(scripted_dir, tmp_path, rephrase_correct=False, target_tuples=1), tmp_path / "d")
    assert off.kept == 1 and off.revisions_tried == 3 * (4 - sum(q.answer == "7" for q in phase1[:4]))
    assert len(load_tuples(tmp_path / "d" / "tuples.jsonl")) == 1


def test_interrupted_collection_resumes_without_duplicates_or_losses(scripted_dir, tmp_path):
    recipe = collect_recipe(scripted_dir, tmp_path)
    full = run_collect(recipe, tmp_path / "a")
    expected = (tmp_path / "a" / "tuples.jsonl").read_text()

    part = tmp_path / "b"
    first = run_collect(recipe, part, stop_after=1)  # interrupted after batch 1 of 3
    assert not first.done and not (part / "done").exists()
    # the crash came while batch 2 was being written: all of its rows and half a line are on disk
    written = (part / "tuples.jsonl").read_text()
    (part / "tuples.jsonl").write_text(expected[: len(written) + (len(expected) - len(written)) // 2 + 7])
    resumed = run_collect(recipe, part)
    assert (part / "tuples.jsonl").read_text() == expected
    assert replace(resumed, counters=replace(resumed.counters, elapsed_s=0.0)) == replace(
        full, counters=replace(full.counters, elapsed_s=0.0))
    assert run_collect(recipe, part) == resumed  # done: nothing is redone
    with pytest.raises(ValueError, match="collect.revisions"):
        run_collect(collect_recipe(scripted_dir, tmp_path, revisions=2), tmp_path / "b")

"""What training changed in a run's answers: accuracy on problems whose gold is negative and on the rest, the
share of answers that write the sum out ("a - b = c"), and the share that carry the Reviser's cue text.

    python scripts/answer_kinds.py RUN/eval     (reads METHOD.sample.rows.jsonl, written by evaluation)

Used for docs/real-model.md; format (writing the sum), arithmetic (negative results) and a cue leaking into
answers are the three things the chain-sum task tangles.
"""

import json
import re
import sys
from pathlib import Path

SUM = re.compile(r"\d\s*[-+]\s*\d.*=\s*-?\d")
CUE = ("incorrect", "rephrase", "start over")


def accuracy(rows: list[dict]) -> float:
    n = sum(len(r["rewards"]) for r in rows)
    return 100 * sum(sum(r["rewards"]) for r in rows) / n if n else float("nan")


def main(eval_dir: Path) -> None:
    print("| model | accuracy, negative gold | accuracy, other | writes the sum | cue text in the answer |")
    print("|---|---|---|---|---|")
    for path in sorted(eval_dir.glob("*.sample.rows.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        negative = [r for r in rows if r["answer"].strip().startswith("-")]
        other = [r for r in rows if not r["answer"].strip().startswith("-")]
        texts = [t for r in rows for t in r["texts"]]
        writes = 100 * sum(bool(SUM.search(t)) for t in texts) / len(texts)
        cue = 100 * sum(any(c in t.lower() for c in CUE) for t in texts) / len(texts)
        print(f"| {path.name.split('.')[0]} | {accuracy(negative):.1f} ({len(negative)}) | {accuracy(other):.1f} ({len(other)}) "
              f"| {writes:.1f}% | {cue:.1f}% |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

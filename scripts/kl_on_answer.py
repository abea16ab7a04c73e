"""Where the Reviser's per-token KL lands on wrong answers: on the final (wrong) number, or elsewhere.

Reads the reports.jsonl that `sdzero explain MODEL --teacher TEACHER --data FILE --out DIR` writes:
    python scripts/kl_on_answer.py DIR/reports.jsonl
For each wrong answer: the extracted final answer (last-number fallback on), whether the largest-KL
token lies on it, and whether it is among the three largest; chance is that span's share of tokens.
"""
import json
import math
import sys
from sdzero_mlx.verifier.extract import extract_answer
reports = [json.loads(l) for l in open(sys.argv[1])]
wrong = [r for r in reports if r["reward"] < 0.5]
hits = chance = n = 0
first_hits = 0
eot_top = 0
in_top3 = 0
chance3 = 0.0
for r in wrong:
    pieces = r["pieces"][:-1] if r["pieces"][-1] == "<|im_end|>" else r["pieces"]
    text = "".join(pieces)  # what the verifier reads: no end-of-turn token
    ans = extract_answer(text, last_number_fallback=True)
    top = max(range(len(r["kl"])), key=lambda i: r["kl"][i])
    top3 = sorted(range(len(r["kl"])), key=lambda i: -r["kl"][i])[:3]
    line = f"{r['problem'][-14:]!r:18} {text[:70]!r:74} top: " + ", ".join(f"{r['pieces'][i]!r}@{i} {r['kl'][i]:.2f}" for i in top3)
    if ans is None:
        print("no answer |", line); continue
    start = text.rfind(ans); end = start + len(ans)
    pos, on = 0, []
    for p in r["pieces"]:  # the end-of-turn token lies past the text: never on the number
        on.append(pos < end and pos + len(p) > start); pos += len(p)
    n += 1
    hits += on[top]
    first_hits += top == 0
    eot_top += r["pieces"][top] == "<|im_end|>"
    in_top3 += any(on[i] for i in top3)
    chance3 += min(1.0, 1 - math.comb(len(on) - sum(on), 3) / math.comb(len(on), 3)) if len(on) >= 3 else 1.0
    chance += sum(on) / len(on)
    print(("HIT  |" if on[top] else "miss |"), line)
print(f"wrong answers {len(wrong)} (with an answer {n}); top-KL token on the final number: {hits}/{n}; chance {chance / max(n,1):.2f}; top-KL token is the first token: {first_hits}/{n}; the end-of-turn token: {eot_top}/{n}")
print(f"final number among the top-3 KL tokens: {in_top3}/{n}; chance {chance3 / max(n, 1):.2f}")
print(f"right answers {len(reports) - len(wrong)}; mean KL/token wrong {sum(sum(r['kl']) for r in wrong)/max(1,sum(len(r['kl']) for r in wrong)):.3f}, right {sum(sum(r['kl']) for r in reports if r['reward']>=0.5)/max(1,sum(len(r['kl']) for r in reports if r['reward']>=0.5)):.3f}")

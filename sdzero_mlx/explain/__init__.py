"""Self-localisation: where in a response the Reviser disagrees with the Generator (`sdzero explain`).

  tokens.py     the measure: per-token log-prob gap and KL on the distillation's own sequences, and its
                summaries (KL concentration, the first mistaken step)
  pages.py      HTML: a response's coloured token strips, a set's sortable index
  pictures.py   PNG: a response's strip and KL bars, a set's buckets; the colour scale
  run.py        the job: load the roles, sample or read responses, measure, write
"""

from .pages import render_html, render_index
from .pictures import render_buckets_png, render_png
from .run import (
    ExplainSettings, explain_examples, explain_one, explain_set_to_dir, load_student_and_teacher, response_ids, write_report,
    write_reports_jsonl,
)
from .tokens import (
    ALTERNATIVES, Alternative, BucketStats, LocalisationScore, TokenReport, first_mistake_span, kind_label,
    kl_concentration, localisation_score, localisation_summary, step_localisation, summary_table, support_label,
    token_pieces, token_report, top_alternatives, top_tokens,
)

__all__ = [
    "ALTERNATIVES", "Alternative", "BucketStats", "ExplainSettings", "LocalisationScore", "TokenReport", "explain_examples", "explain_one",
    "explain_set_to_dir", "first_mistake_span", "kind_label", "kl_concentration", "load_student_and_teacher",
    "localisation_score", "localisation_summary", "render_buckets_png", "render_html", "render_index", "render_png",
    "response_ids", "step_localisation", "summary_table", "support_label", "token_pieces", "token_report",
    "top_alternatives", "top_tokens", "write_report", "write_reports_jsonl",
]

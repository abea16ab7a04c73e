"""`sdzero doctor RECIPE`: before an hours-long run, whether SD-Zero can help this model on this data, and what
the run will cost, measured in minutes on the recipe's own model without training it.

  sequences.py  the exact sequences of each role, and the checks that catch a broken setup
  signal.py     reward rate, truncation, correction rate, the Reviser's hindsight at the answer and at
                the first wrong step (under each teacher context), KL concentration; on the base and on
                the teacher after SRT
  cost.py       one real step of each stage in a temporary folder; the whole run counted from the recipe
  verdict.py    helps / unclear / unlikely, with reasons; the teacher context expected to help
  report.py     what it found (DoctorReport): doctor.md and doctor.json
  run.py        the job that ties them together

It never writes into run.output_dir and only reads model folders (the recipe's, and RUN/srt/model or
--teacher when there is one).
"""

from .report import DoctorReport
from .run import DEFAULT_N, run_doctor

__all__ = ["DEFAULT_N", "DoctorReport", "run_doctor"]

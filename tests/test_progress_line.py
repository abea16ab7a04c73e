"""The one-line progress report (metrics.format_record): what a user watches during a long stage."""

from dataclasses import replace

from sdzero_mlx.metrics import StepRecord, format_record

BASE = StepRecord(step=3, total_steps=10, stage="distill", loss=0.25, grad_norm=1.0, learning_rate=1e-4,
                  weight_change=2e-3, step_s=4.0, trained_tokens_per_s=120.0, peak_memory_gb=1.5, generations=48,
                  sampled_tokens=4800, trained_tokens=4800, elapsed_s=12.0, reward=0.375, response_tokens=200.0)


def test_the_line_names_step_loss_reward_speed_and_memory():
    line = format_record(BASE)
    for part in ("distill: step 3/10", "loss 0.2500", "reward 0.375", "len 200", "4.0s/step", "120 trained tok/s",
                 "peak 1.50 GB"):
        assert part in line, (part, line)
    assert "cut" not in line  # no share reported: nothing cut (an SRT step has no samples)


def test_cut_answers_are_shown_and_over_half_says_what_to_raise():
    some = format_record(replace(BASE, truncated=0.125))
    assert "cut 12%" in some and "max_tokens" not in some
    most = format_record(replace(BASE, truncated=0.75))
    assert "cut 75% (over half: raise sampling.max_tokens)" in most
    assert "cut" not in format_record(replace(BASE, truncated=0.0))

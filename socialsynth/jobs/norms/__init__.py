"""Normness distillation (generate_synthetic_data.py): rewrite, rate, filter, judge agreement, preference deltas."""

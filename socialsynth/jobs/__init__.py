"""One package per job; each has a config, a run function and a cli.py."""

from socialsynth.report.hook import register as _register_report

_register_report()  # --report on every job: the page is written when a run with report set finishes

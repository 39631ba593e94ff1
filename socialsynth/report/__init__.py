"""``socialsynth report OUTPUT_DIR``: one self-contained, offline HTML page to read any job's outputs (see
:mod:`socialsynth.report.build`)."""

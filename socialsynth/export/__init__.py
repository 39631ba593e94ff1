"""`socialsynth export`: a job's outputs as a publishable data set (Parquet, JSONL or a `datasets` folder) with a
Hugging Face data card. See :mod:`socialsynth.export.cli`."""

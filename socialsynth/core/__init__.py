"""Shared infrastructure of every job: configs and flags, the run record, the chunk runner, readers and
writers, errors and provenance. Imports no job."""

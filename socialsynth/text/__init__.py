"""Text utilities shared by the jobs: cleaning generations (quality) and sentence embeddings."""

"""`socialsynth prepare`: Reddit dumps and flat tables to the comment files the normness job reads."""

"""One package per job; each has a config, a run function and a cli.py."""

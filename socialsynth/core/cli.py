"""What every command shares when it runs: logging set up the same way, and one exit path (bad input -> one line
and exit 2, a clean stop -> how to resume and 128+signal). The flags themselves come from the jobs' declared
configs (socialsynth.core.config)."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable

from socialsynth.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, InputError, Interrupted


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in (
        "httpx",
        "httpx2",
        "openai",
        "urllib3",
        "filelock",
        "huggingface_hub",
        "transformers",
        "sentence_transformers",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # peft imports bitsandbytes, which warns on CPU that an optional kernel package (fetched from the Hub) is missing
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_main(fn: Callable[[], int]) -> int:
    """Run a script's main: bad input → one line and exit 2; interruption → how to resume and 128+signal."""
    try:
        return fn()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Interrupted as e:
        print(f"{e}; {e.resume_hint}" if e.resume_hint else str(e), file=sys.stderr)
        return getattr(e, "exit_code", EXIT_FAILURE)
    except KeyboardInterrupt:
        print("stopped at once; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception:  # a bug or an environment failure: keep the traceback for the report
        traceback.print_exc()
        return EXIT_FAILURE

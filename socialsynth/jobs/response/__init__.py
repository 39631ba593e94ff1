"""Seed 004 (SocialAlign): persona-conditioned public-response prediction.

Stages, each a module with `run_<stage>(cfg) -> summary` and `format_summary(summary)`, its settings one declared
config in config.py, wired up by cli.py (predict_responses.py is its shim):
    dataset     build-dataset     topics + users -> cleaned cases with BM25-retrieved history (cases.jsonl)
    persona     extract-personas  persona per user (personas.jsonl) and the Alpaca records (alpaca/*.jsonl)
    training    train             PAC-LoRA (pac_lora.py) or plain LoRA adapters on the Alpaca records
    inference   infer             batched generation with an adapter, zero-shot or --rag (rag.py, LaMP-style)
    evaluate    evaluate          micro (per user and topic) and macro (per topic) metrics, one comparison table
The record schemas that pass between stages are in records.py.
"""

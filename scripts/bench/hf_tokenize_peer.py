#!/usr/bin/env python3
"""Hugging Face tokenizers' (Rust) single-threaded encode speed on a corpus: the peer of tokenize's
BenchmarkEncodeSentencepiece, run with $TAGPR_ORT_PYTHON (a Python with `tokenizers`).

    python3 scripts/bench/hf_tokenize_peer.py --tokenizer T.json --corpus corpus.json --min-seconds 4

corpus.json is {"docs": [...]}; each document is encoded alone (no batch, so no Rust thread pool), without
special tokens, as tagpr's Encode is timed. Prints {"mb_per_s": …, "tokenizers": version}.
"""
import argparse
import json
import os
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"

import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--min-seconds", type=float, default=4)
    a = ap.parse_args()
    docs = json.load(open(a.corpus, encoding="utf-8"))["docs"]
    tok = Tokenizer.from_file(a.tokenizer)
    size = sum(len(d.encode("utf-8")) for d in docs)
    for d in docs[:8]:
        tok.encode(d, add_special_tokens=False)
    total, start = 0, time.perf_counter()
    while time.perf_counter() - start < a.min_seconds:
        for d in docs:
            tok.encode(d, add_special_tokens=False)
        total += size
    print(json.dumps({"mb_per_s": total / (time.perf_counter() - start) / 1e6, "tokenizers": tokenizers.__version__}))


if __name__ == "__main__":
    main()

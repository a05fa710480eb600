#!/usr/bin/env python3
"""Cross-check the JS reference fixtures against Hugging Face tokenizers (Rust).

    go run ./tokenize/internal/record -parity-corpus-out /tmp/corpus.json -bert-out /tmp/bert
    python3 scripts/tokenize/hf_parity.py /tmp/corpus.json \
        qwen3=.cache/tokenizers/qwen3/tokenizer.json llama3=.cache/tokenizers/llama3/tokenizer.json \
        bert=/tmp/bert/bert-tokenizer.json trained=tokenize/testdata/trained/tokenizer.json

Prints, per tokenizer, on how many documents HF's ids differ from
tokenize/testdata/parity_NAME.json.gz. Needs `pip install tokenizers`.
"""
import gzip
import hashlib
import json
import sys

import tokenizers
from tokenizers import Tokenizer


def main():
    docs = json.load(open(sys.argv[1], encoding="utf-8"))["docs"]
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        fx = json.load(gzip.open(f"tokenize/testdata/parity_{name}.json.gz"))
        tok = Tokenizer.from_file(path)
        bad = 0
        for i, e in enumerate(tok.encode_batch(docs, add_special_tokens=False)):
            h = hashlib.sha256(",".join(map(str, e.ids)).encode()).hexdigest()
            if h != fx["docs"][i]["ids_sha256"]:
                bad += 1
        print(f"{name}: tokenizers {tokenizers.__version__} differs from {fx['reference']} on {bad} of {len(docs)} documents")


if __name__ == "__main__":
    main()

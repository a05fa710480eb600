#!/usr/bin/env python3
"""Record Hugging Face tokenizers' ids and offsets (in characters) for a set of
texts, as a second reference beside the JS one: tokenize's TestOffsetsMatchHF
compares tagpr's EncodeFull against it.

    python3 hf_offsets.py TEXTS.json OUT.json NAME=TOKENIZER.json...

TEXTS.json is a JSON list of strings. Needs `pip install tokenizers`.
"""
import json
import sys

import tokenizers
from tokenizers import Tokenizer


def main():
    texts = json.load(open(sys.argv[1], encoding="utf-8"))
    out = {"reference": f"tokenizers {tokenizers.__version__}", "texts": texts, "tokenizers": {}}
    for arg in sys.argv[3:]:
        name, path = arg.split("=", 1)
        tok = Tokenizer.from_file(path)
        rows = []
        for t in texts:
            e = tok.encode(t, add_special_tokens=False)
            rows.append({"ids": e.ids, "offsets": [list(o) for o in e.offsets]})
        out["tokenizers"][name] = rows
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()

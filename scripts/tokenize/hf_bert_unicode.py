#!/usr/bin/env python3
"""Record which characters Hugging Face tokenizers' BERT components treat as
punctuation (BertPreTokenizer, Punctuation), as control characters
(BertNormalizer clean_text removes them) and as nonspacing marks
(BertNormalizer strip_accents drops them) into tokenize/bert_unicode.json,
which tokenize embeds.

    python3 scripts/tokenize/hf_bert_unicode.py tokenize/bert_unicode.json

HF decides these with tables of an older Unicode than Go's (characters
assigned since, such as U+061D or U+0B55, are neither punctuation nor marks
there, and U+1734 is still a mark), so tagpr reads HF's answers rather than
Go's unicode package. Each class is a list of [first, last] code point
ranges. Needs `pip install tokenizers`.
"""
import json
import sys

import tokenizers
from tokenizers import normalizers, pre_tokenizers


def ranges(cps):
    out = []
    for c in cps:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def main():
    pre = pre_tokenizers.BertPreTokenizer()
    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    punct, control, mark = [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if [p for p, _ in pre.pre_tokenize_str("a" + c + "b")] == ["a", c, "b"]:
            punct.append(cp)
        if clean.normalize_str("a" + c + "b") == "ab":
            control.append(cp)
        if strip.normalize_str(c) == "":
            mark.append(cp)
    out = {"reference": f"tokenizers {tokenizers.__version__}",
           "punct": ranges(punct), "control": ranges(control), "mark": ranges(mark)}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, separators=(",", ":"))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Record Hugging Face tokenizers' normalizer output and alignment for the Precompiled normalizer
(sentencepiece's nmt_nfkc rules as transformers converts them for XLM-R, T5, mBART...) into
tokenize/testdata/normalizer_hf.json; tokenize's TestPrecompiledMatchesHF compares tagpr's
normalizers against it.

    go run ./tokenize/internal/record -parity-corpus-out /tmp/corpus.json
    python3 scripts/tokenize/hf_normalizer.py tokenize/testdata/normalizer_hf.json \\
        tokenize/testdata/sentencepiece/unigram/tokenizer.json /tmp/corpus.json

Two normalizers are recorded: "sequence", the file's whole normalizer (Sequence[Precompiled, Strip,
Replace]), and "precompiled", its Precompiled charsmap alone. Texts: hf_edge.py's adversarial TEXTS,
texts aimed at the Precompiled normalizer's grapheme rules (below), and a deterministic sample of the
parity corpus's lines chosen to cover NFKC-relevant characters (full-width forms, ligatures,
compatibility characters, combining marks, emoji ZWJ sequences, Hangul, control characters, tabs,
CR LF, non-breaking spaces).

For each text and normalizer: "normalized" (normalize_str; null when it equals the text) and the
original offsets, in characters, of every character of the normalized string, as HF's alignments give
them (NormalizedString through PreTokenizedString.normalize, then split into single characters and
read back with get_splits(offset_referential="original", offset_type="char")). To keep the file small
the offsets are stored as exceptions: [k, start, end] for output character k whose offsets are not
(e, e+1), e being the end of character k-1's offsets (0 for k = 0).

Needs `pip install tokenizers` (recorded with 0.23.3).
"""
import base64
import json
import os
import random
import sys
import unicodedata

import tokenizers
from tokenizers import PreTokenizedString, normalizers

sys.dont_write_bytecode = True  # importing hf_edge leaves no __pycache__ in the tree
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_edge import TEXTS as EDGE_TEXTS  # noqa: E402

# Texts for the Precompiled normalizer's quirks: a grapheme under 6 bytes replaced whole by its
# first (shortest) prefix rule, longer graphemes character by character, removals ("\x1e" maps to
# nothing) at the start of the text (HF then shifts the alignment) and after expansions.
PRECOMPILED_TEXTS = [
    "\ufb01\u0301x", "\u2122\x1eg", "\x1eab", "\x1e\x1eab", "a\x1e", "\x1e", "\u2122\x1e\x1eg", "\ufb03\x1e!",
    "\u3000\u3000a  b", "a \u3000 b", "\uff76\uff9e\uff8a\uff9f", "\u30ab\u3099", "\u00bd\u2044\u215e",
    "\u1100\u1161\u11a8\uac00\u3131\u314f", "\uffa1\uffc2", "\u0915\u094d\u0937\u0301", "\u0915\u093c \u0958",
    "\u0e01\u0e33 \u0e4d\u0e32", "\u0627\u0644\u0644\u0647 \ufdf2 \ufefb", "\u01c4\u01c5\u01c6 \u1e9b\u0323",
    "1\ufe0f\u20e3 #\ufe0f\u20e3", "\U0001f1fa\U0001f1f8\U0001f1eb", "\u00a9\ufe0f\u00ae", "e\u0301\u0301\u0301",
    "\u2126\u0301 \u212b\u0301", "x\u00ad\u200by\u2060z\ufeff", "\u202ertl\u202c \u200e\u200f", "\U000e0041\U000e007f",
    "\x7f\x80\x9f\x85\xa0", "\t\v\f\r\n\x1c\x1d\x1f", "\U0001d400\U0001d7ce \u2460\u2474\u2488",
    "\u33a1\u3392 \u337b\u32ff", "\u2f00\u2fd5 \u3280", "\ufe35\ufe36 \ufe4d", "\uff61\uff62\uff63\uff64",
    "\U0001f468\u200d\u2764\ufe0f\u200d\U0001f48b\u200d\U0001f468", "\u00c5\u030a", "a\u0308\u0304\u0301",
    "\u03d3\u03d4 \u1fee\u1ffd", "\u2000\u2001\u2002\u200a\u202f\u205f", "\ud7b0\ud7c6 \u3164\uffa0",
    "\u0f77\u0f79 \u0f73\u0f75", "\u1b06\u1b35", "\ufb1d\ufb1f\ufb2a", "\u2df5\u1dc0\u20d0",
    # Indic conjuncts (rule GB9c of Unicode 15.1): the cluster goes on over virama + consonant, so the
    # acute after the consonant (with a rule of its own) stays; cut there, it would be dropped.
    "\u0915\u094d\u0958\u0301", "\u0915\u093c\u094d\u0958\u0301", "\u0915\u094d\u200d\u0958\u0301",
    "\u0915\u094d\u0301\u0958\u0301", "\u0915\u0941\u094d\u0958\u0301", "\u094d\u0958\u0301",
    "\u0995\u09cd\u09dc\u0301", "\u0b15\u0b4d\u0b5c\u0301", "\u0915\u094d\u0915\u094d\u0958\u0301 x",
    "\u0915\u094d\u034f\u0958\u0301", "\u0e01\u0e3a\u0958\u0301", "\u0915\u094d\u200c\u0958\u0301",
    "\u0915\u094d\u093e\u0958\u0301", "\u0915\u09be\u094d\u0958\u0301", "\u0915\u094d\U0001f3fb\u0958\u0301",
    "\u0915\u094d\ufe0f\u0958\u0301", "\u0915\u094d\U000e0020\u0958\u0301",
]


def split_chars(i, ns):
    return [ns[k:k + 1] for k in range(len(str(ns)))]


def record(norm, text):
    pts = PreTokenizedString(text)
    pts.normalize(lambda ns: norm.normalize(ns))
    pts.split(split_chars)
    splits = pts.get_splits(offset_referential="original", offset_type="char")
    normalized = norm.normalize_str(text)
    assert "".join(s for s, _, _ in splits) == normalized, (text, splits, normalized)
    exceptions, prev = [], 0
    for k, (_, (s, e), _) in enumerate(splits):
        if (s, e) != (prev, prev + 1):
            exceptions.append([k, s, e])
        prev = e
    return {"normalized": None if normalized == text else normalized, "offsets": exceptions}


CATEGORIES = {
    "full-width": lambda c: "\uff01" <= c <= "\uffef" or c == "\u3000",
    "ligature": lambda c: "\ufb00" <= c <= "\ufb4f" or c in "\u0132\u0133\u01c4\u01c5\u01c6\u01c7\u01c8\u01c9",
    "compatibility": lambda c: unicodedata.normalize("NFKC", c) != unicodedata.normalize("NFC", c),
    "combining": lambda c: unicodedata.category(c) in ("Mn", "Me", "Mc"),
    "zwj": lambda c: c == "\u200d",
    "hangul": lambda c: "\uac00" <= c <= "\ud7a3" or "\u1100" <= c <= "\u11ff" or "\u3130" <= c <= "\u318f",
    "control": lambda c: unicodedata.category(c) in ("Cc", "Cf") and c not in "\n\r\t",
    "tab": lambda c: c == "\t",
    "nbsp": lambda c: c in "\u00a0\u202f\u2007",
    "nfc": lambda c: unicodedata.normalize("NFC", c) != c,
}


def sample_corpus(path, per_category=30, extra=120, crlf=30, max_len=240):
    docs = json.load(open(path, encoding="utf-8"))["docs"]
    lines = []
    for doc in docs:
        parts = doc.split("\n")
        for i, line in enumerate(parts):
            if 0 < len(line) <= max_len:
                lines.append(line)
            # CR LF pairs: a line ending in "\r" with the next one.
            if line.endswith("\r") and i + 1 < len(parts) and len(line) + len(parts[i + 1]) < max_len:
                lines.append(line + "\n" + parts[i + 1])
    rng = random.Random(20240611)
    rng.shuffle(lines)
    chosen, seen = [], set()

    def take(line):
        if line not in seen:
            seen.add(line)
            chosen.append(line)

    for name, pred in CATEGORIES.items():
        n = 0
        for line in lines:
            if n == per_category:
                break
            if line not in seen and any(pred(c) for c in line):
                take(line)
                n += 1
    n = 0
    for line in lines:
        if n == crlf:
            break
        if "\r\n" in line and line not in seen:
            take(line)
            n += 1
    for line in lines[:extra]:
        take(line)
    return chosen


def main():
    out_path, tok_path, corpus_path = sys.argv[1:4]
    spec = json.load(open(tok_path, encoding="utf-8"))["normalizer"]
    charsmap = next(n for n in spec["normalizers"] if n["type"] == "Precompiled")["precompiled_charsmap"]
    norms = {
        "sequence": tokenizers.Tokenizer.from_file(tok_path).normalizer,
        "precompiled": normalizers.Precompiled(base64.b64decode(charsmap)),
    }
    texts = list(dict.fromkeys(EDGE_TEXTS + PRECOMPILED_TEXTS + sample_corpus(corpus_path)))
    out = {"reference": f"tokenizers {tokenizers.__version__}",
           "tokenizer": os.path.relpath(tok_path, os.path.join(REPO, "tokenize", "testdata")),
           "texts": texts, "normalizers": {}}
    for name, norm in norms.items():
        out["normalizers"][name] = [record(norm, t) for t in texts]
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{len(texts)} texts, {os.path.getsize(out_path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

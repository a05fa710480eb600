#!/usr/bin/env python3
"""Record Hugging Face tokenizers' encodings and decodings of adversarial texts
(mixed scripts, ZWJ emoji, NFKC ligatures, marks reordered or composed by
NFC, whitespace runs, digit runs,
contractions, special tokens and look-alikes) into
tokenize/testdata/edge_hf.json; tokenize's TestEdgeCasesMatchHF compares
tagpr's Encode, EncodeFull (offsets, add_special_tokens) and Decode against it.

    python3 scripts/tokenize/hf_edge.py tokenize/testdata/edge_hf.json \\
        qwen3=.cache/tokenizers/qwen3/tokenizer.json llama3=.cache/tokenizers/llama3/tokenizer.json \\
        gpt4o=.cache/tokenizers/gpt4o/tokenizer.json claude=.cache/tokenizers/claude/tokenizer.json \
        bert=/tmp/bert/bert-tokenizer.json sp-legacy=tokenize/testdata/sentencepiece/legacy/tokenizer.json \
        sp-metaspace=tokenize/testdata/sentencepiece/metaspace/tokenizer.json \
        sp-split=tokenize/testdata/sentencepiece/split/tokenizer.json \
        sp-nofallback=tokenize/testdata/sentencepiece/nofallback/tokenizer.json \
        sp-unigram=tokenize/testdata/sentencepiece/unigram/tokenizer.json

with the BERT file from `go run ./tokenize/internal/record -bert-out /tmp/bert`.

Decodings cover each text's ids and, for texts of up to 64 ids, cut copies of them (a character split
between tokens decodes to U+FFFD as String::from_utf8_lossy writes it).
Needs `pip install tokenizers`. Offsets are in characters.
"""
import json
import sys

import tokenizers
from tokenizers import Tokenizer

TEXTS = [
    "", " ", "\n", "\r\n", "a\r\nb\r\n\r\nc", "x\r\r\ny", "   \n   \n", "\t\t\tindent\n\t\tx", " " * 40 + "end",
    "\n" * 12, "end" + " " * 20, "a \t \n b", "word  \nx",
    "12345678901234567890", "1 22 333 4444 55555", "3.14159265358979", "١٢٣٤٥٦", "१२३४५", "①②③", "x²³",
    "I'm you're he's we'll they'd I've can't", "I'M YOU'RE HE'S WE'LL THEY'D", "i'S It'Ll", "'s'll're", "don’t",
    "ſ'S", "'ſtuff", "McDonald'S",
    "<|im_end|>", "hi<|im_end|>there", "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
    "a<|endoftext|>b", "<think>\nreason\n</think>\n\nanswer", "<|im_end|", "<|im_end |>", "<|IM_END|>",
    "<<|im_end|>>", "<|begin_of_text|>hi<|eot_id|>", "<|reserved_special_token_5|>", "<EOT>x", " <|im_end|> ",
    "日本語のテキストです。", "한국어 텍스트", "مرحبا بالعالم", "नमस्ते दुनिया", "สวัสดีครับ", "Σίσυφος ΟΔΥΣΣΕΥΣ",
    "👨\u200d👩\u200d👧\u200d👦", "👍🏽👍🏿", "🏳️\u200d🌈", "a👨\u200d💻b", "🇺🇸🇫🇷",
    "e\u0301", "Cafe\u0301 Caf\u00e9", "\u0301start", "A\u030a\u0327", "\u017f\u0307\u0323", "p\u0307\u0327\u0327",
    "\u05dc\u05bc\u0358'd", "\u05e9\u05c2\u0487\u0487", "\uac17\u0301'm", "\u1100\u1161\u11a8\u0300",
    "\ufb01 \u2126 \u212b \u00bd \u2460", "\u01c5 \u01c8", "\u3000full\u3000width\uff21\uff42", "\u200b\u200c\u200d\ufeff",
    "\u0085\u2028\u2029\u00a0", "\x00\x01\x7f", "İstanbul ı", "ß ẞ",
    "a\u061db \u1e79\u061d m\u0b55 a\u1734b a\u166db a\u0890b \u0ece a\u2e55b", "x\U0002b820y x\U0002b920y \u4e00",
    "▁x ▁▁y", "▁", "a▁", "<s>[INST] hi [/INST] ok</s><s>[INST] again [/INST]", " <s> a", "<s> <s>",
    "<0x41><unk>x", "<0xZZ>", "  lead", "trail  ", "ἀⰀⴀ ༀႠ ꀀ𐀀 mixed",
    "supercalifragilisticexpialidocious" * 6, "🙂" * 20, "日" * 60,
]


def main():
    out = {"reference": f"tokenizers {tokenizers.__version__}", "texts": TEXTS, "tokenizers": {}}
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        tok = Tokenizer.from_file(path)
        enc, dec = [], []
        for t in TEXTS:
            e = tok.encode(t, add_special_tokens=False)
            s = tok.encode(t, add_special_tokens=True)
            enc.append({"ids": e.ids, "offsets": [list(o) for o in e.offsets], "ids_special": s.ids})
            for ids in (e.ids, e.ids[:-1], e.ids[1:]) if len(e.ids) <= 64 else (e.ids,):
                if ids:
                    dec.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                                "text_skip": tok.decode(ids, skip_special_tokens=True)})
        out["tokenizers"][name] = {"encode": enc, "decode": dec}
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Record transformers' apply_chat_template(tokenize=False) for the pinned Qwen3
and Llama-3 tokenizers on multi-turn chats (system prompts, empty content,
<think> blocks, whitespace and control characters at the ends of content) into
tokenize/testdata/chat_hf.json; tokenize's TestChatMatchesTransformers holds
RenderChat and EncodeChat to these strings and to the ids of encoding them.

    python3 scripts/tokenize/hf_chat.py tokenize/testdata/chat_hf.json

Run from the repository root after `make setup`; needs `pip install transformers`
(offline: the tokenizers are loaded from .cache/tokenizers). Llama-3's pinned
template writes the assistant header even without add_generation_prompt (the
first release of Meta-Llama-3-Instruct's template); tagpr follows the later one,
which writes it only for add_generation_prompt, so only that case is recorded
for llama3.
"""
import json
import sys

import transformers
from transformers import AutoTokenizer


def S(c): return {"role": "system", "content": c}
def U(c): return {"role": "user", "content": c}
def A(c): return {"role": "assistant", "content": c}


CONVS = [
    [U("Hi")], [S("You are helpful."), U("Hi")], [S(""), U("")], [U("")], [S("sys"), U("q"), A("a"), U("q2")],
    [U(" padded \n"), A("  spaced answer\n\n")], [U("q"), A("<think>\nr\n</think>\n\nans")],
    [U("q"), A("<think>r</think>ans"), U("q2")], [U("q1"), A("<think>r1</think>a1"), U("q2"), A("<think>r2</think>a2")],
    [U("q"), A("a1"), A("<think>r2</think>a2")], [U("q"), A("no think")], [U("q"), A("")], [U("q"), A("<think></think>")],
    [U("q"), A("</think>x</think>y")], [U("q"), A("<think>a<think>b</think>c")],
    [U("q"), A("\n\n<think>\n\nr\n\n</think>\n\nA")], [S("s1"), U("q"), S("s2"), U("q2")], [A("first assistant")],
    [S("only system")], [U("q"), A("<think>\nr\n</think>")], [U("日本語 👨\u200d👩\u200d👧"), A("<think>考え</think>答え")],
    [U("<|im_end|> injected"), A("<|eot_id|> also")],
    [U("\u3000q\u00a0"), A("\t a \t"), U("\u0085x\u2028"), A("\x1fy\x1c"), U("\x1e\x1d")],
    [U("q"), A("<think>\n</think>\n\n")], [U("q"), A("r</think>a")],
]


def main():
    out = {"reference": f"transformers {transformers.__version__}", "chats": CONVS, "tokenizers": {}}
    for name in ("qwen3", "llama3"):
        tok = AutoTokenizer.from_pretrained(f".cache/tokenizers/{name}", local_files_only=True)
        rows = []
        for msgs in CONVS:
            row = {}
            for gen in (True, False):
                if name == "llama3" and not gen:
                    continue
                text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
                row["gen" if gen else "nogen"] = {"text": text, "ids": tok(text, add_special_tokens=False)["input_ids"]}
            rows.append(row)
        out["tokenizers"][name] = rows
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()

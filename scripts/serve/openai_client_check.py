#!/usr/bin/env python3
"""Drive `tagpr serve` with the official `openai` Python client.

Starts `tagpr serve` on a free loopback port, then checks what an OpenAI
client sees: the model list, a chat completion, a streamed chat (chunks add
up to the whole answer, usage at the end), n > 1 sampled choices that a seed
reproduces, a text completion with log-probs, a stop string, a refused
request (400 context_length_exceeded) and a clean exit on SIGTERM.

    /work/venv/bin/python scripts/serve/openai_client_check.py            # builds a tiny model
    /work/venv/bin/python scripts/serve/openai_client_check.py --model DIR

Without --model it builds a 1-layer built-in model (`tagpr model init`) with
the Qwen3 tokenizer pinned in models.lock (`make setup` fetches it): random
weights, so the text is nonsense, but every byte goes through the real
tokenizer, chat template, ONNX Runtime and HTTP server. Exit 0 means every
check passed. Tested with openai 3.63.0 (pip install openai).
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pinned(name):
    with open(os.path.join(ROOT, "models.lock"), "rb") as f:
        lock = tomllib.load(f)
    for a in lock["artifact"]:
        if a["name"] == name:
            return os.path.join(ROOT, a["path"])
    sys.exit(f"models.lock has no {name}")


def tiny_model(tagpr, work):
    d = os.path.join(work, "qwen-tiny")
    subprocess.run([tagpr, "model", "init", "--arch", "llama", "--layers", "1", "--d-model", "32", "--heads", "2",
                    "--kv-heads", "1", "--vocab", "151669", "--eos-token-id", "151643", "--seed", "3",
                    "--init-std", "0.05", "--out", d], check=True, stdout=subprocess.DEVNULL)
    for name, file in [("qwen3-tokenizer", "tokenizer.json"), ("qwen3-tokenizer-config", "tokenizer_config.json")]:
        src = pinned(name)
        if not os.path.exists(src):
            sys.exit(f"{src} is missing: run `make setup`")
        shutil.copy(src, os.path.join(d, file))
    return d


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok   {what}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tagpr", default=os.path.join(ROOT, "bin", "tagpr"))
    ap.add_argument("--model", help="model folder to serve (default: build a tiny one)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tagpr-openai-")
    model_dir = args.model or tiny_model(args.tagpr, work)
    print(f"openai {openai.__version__}; serving {model_dir}")
    proc = subprocess.Popen([args.tagpr, "serve", "--model", model_dir, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://[0-9.:]+/v1", line)
        if not m:
            sys.exit(f"tagpr serve did not start: {line}{proc.stderr.read()}")
        base = m.group(0)
        print(line.strip())
        client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)

        models = client.models.list().data
        name = models[0].id
        check(len(models) == 1, f"models.list: {name}")

        msgs = [{"role": "system", "content": "You answer briefly."},
                {"role": "user", "content": "Which genre does this user like?"}]
        whole = client.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=16)
        c = whole.choices[0]
        check(c.message.role == "assistant" and c.finish_reason in ("stop", "length") and whole.usage.completion_tokens > 0,
              f"chat: {c.message.content!r} ({c.finish_reason}, {whole.usage.prompt_tokens}+{whole.usage.completion_tokens} tokens)")

        chunks, text, usage = 0, "", None
        stream = client.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=16,
                                                stream=True, stream_options={"include_usage": True})
        for ch in stream:
            chunks += 1
            if ch.usage:
                usage = ch.usage
            for choice in ch.choices:
                text += choice.delta.content or ""
        check(text == c.message.content and usage and usage.completion_tokens == whole.usage.completion_tokens,
              f"streamed chat: {chunks} chunks add up to the whole answer, usage {usage.completion_tokens} tokens")

        a = client.chat.completions.create(model=name, messages=msgs, n=3, temperature=1.0, seed=7, max_tokens=8)
        b = client.chat.completions.create(model=name, messages=msgs, n=3, temperature=1.0, seed=7, max_tokens=8)
        texts = [x.message.content for x in a.choices]
        check([x.index for x in a.choices] == [0, 1, 2] and texts == [x.message.content for x in b.choices]
              and len(set(texts)) > 1, f"n=3 sampled with seed 7, reproduced: {texts}")

        streamed = ["", "", ""]
        for ch in client.chat.completions.create(model=name, messages=msgs, n=3, temperature=1.0, seed=7,
                                                 max_tokens=8, stream=True):
            for choice in ch.choices:
                streamed[choice.index] += choice.delta.content or ""
        check(streamed == texts, "n=3 streamed: each index adds up to its whole choice")

        comp = client.completions.create(model=name, prompt="Once upon a time", max_tokens=6, temperature=0,
                                         logprobs=2)
        lp = comp.choices[0].logprobs
        check(len(lp.tokens) == len(lp.token_logprobs) == comp.usage.completion_tokens and all(len(t) <= 2 for t in lp.top_logprobs),
              f"completion: {comp.choices[0].text!r} with log-probs {[round(x, 2) for x in lp.token_logprobs]}")

        if len(text) > 4:
            stop = text[2:4]
            cut = client.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=16, stop=[stop])
            check(cut.choices[0].message.content == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop",
                  f"stop {stop!r}: {cut.choices[0].message.content!r}")

        try:
            client.chat.completions.create(model=name, messages=msgs, max_tokens=10**6)
            check(False, "an oversized max_tokens is refused")
        except openai.BadRequestError as e:
            check(e.status_code == 400 and e.code == "context_length_exceeded",
                  f"max_tokens too large: HTTP {e.status_code} {e.code}")

        # Negative values favour repeating the answer's tokens, so they change a random model's greedy answer.
        pen = client.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=16, frequency_penalty=-2,
                                             presence_penalty=-2, extra_body={"repetition_penalty": 1.1})
        got = pen.choices[0].message.content
        check(got and got != c.message.content,
              f"penalties (frequency/presence -2, repetition_penalty 1.1 in extra_body): {got!r}")

        r = client.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=4,
                                           extra_body={"separate_reasoning": True})
        check(r.choices[0].message.content is not None, "separate_reasoning accepted (extra_body)")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "killed"
        shutil.rmtree(work, ignore_errors=True)
    check(code == 0, f"SIGTERM: tagpr serve exited {code}")
    print("PASS")


if __name__ == "__main__":
    main()

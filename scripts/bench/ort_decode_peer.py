#!/usr/bin/env python3
"""onnxruntime-Python KV-cache greedy loop: the peer of onnx/lm's decode benchmark.

Runs a causal LM in the Optimum text-generation-with-past layout (the file
tagpr's built-in models are written as) the plainest way onnxruntime's
Python API allows: prefill a batch of identical prompts 1..T0 with an empty
past, then one session run per new token, feeding each run's present.* as
the next past and numpy's argmax of the last logits as the next input id.
It times the decode steps (best of --reps runs, after one warm-up) and the
process CPU time over them, and prints one JSON object on stdout:
prefill_ms, decode_ms_per_step, cores_busy (CPU time / wall over the
decode steps), ids (the generated tokens per row).

With --serve it loads the session once, warms it up, prints {"ready": true}
and then runs one generation per line read from stdin, printing one such
object per run, until stdin closes: a caller can alternate single runs with
its own, so both sides meet the same moments of a noisy machine.

Exit 3 when onnxruntime or numpy cannot be imported ("no peer here").
"""

import argparse
import json
import sys
import time

PROG = "ort_decode_peer"
EXIT_NO_ORT = 3


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model.onnx in the Optimum with-past layout")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (0: onnxruntime's default)")
    p.add_argument("--reps", type=int, default=3, help="timed runs; the best is reported")
    p.add_argument("--serve", action="store_true", help="one run per stdin line, one JSON line each")
    a = p.parse_args(argv)
    for n in ("batch", "prompt_len", "new_tokens", "reps"):
        if getattr(a, n) <= 0:
            p.error(f"--{n.replace('_', '-')} is {getattr(a, n)}, want > 0")
    if a.new_tokens < 2:
        p.error("--new-tokens must be at least 2 (one prefill token, then decode steps)")
    if a.threads < 0:
        p.error(f"--threads is {a.threads}, want >= 0")
    return a


def generate(ort, np, sess, a):
    """One greedy run; returns (prefill seconds, decode seconds, decode CPU seconds, ids)."""
    B, T0, N = a.batch, a.prompt_len, a.new_tokens
    names = [i.name for i in sess.get_inputs()]
    kv = {i.name: i.shape for i in sess.get_inputs() if i.name.startswith("past_key_values.")}
    outs = [o.name for o in sess.get_outputs()]
    feeds = {"input_ids": np.tile(np.arange(1, T0 + 1, dtype=np.int64), (B, 1)),
             "attention_mask": np.ones((B, T0), dtype=np.int64)}
    if "position_ids" in names:
        feeds["position_ids"] = np.tile(np.arange(T0, dtype=np.int64), (B, 1))
    for name, shape in kv.items():
        feeds[name] = np.zeros((B, shape[1], 0, shape[3]), dtype=np.float32)
    ids = np.zeros((B, N), dtype=np.int64)
    t0 = time.perf_counter()
    for s in range(N):
        if s == 1:
            t1, c1 = time.perf_counter(), time.process_time()
        res = dict(zip(outs, sess.run(outs, feeds)))
        nxt = res["logits"][:, -1, :].argmax(axis=-1)
        ids[:, s] = nxt
        P = T0 + s
        feeds["input_ids"] = nxt.reshape(B, 1).astype(np.int64)
        feeds["attention_mask"] = np.ones((B, P + 1), dtype=np.int64)
        if "position_ids" in feeds:
            feeds["position_ids"] = np.full((B, 1), P, dtype=np.int64)
        for name in kv:
            feeds[name] = res[name.replace("past_key_values.", "present.")]
    t2, c2 = time.perf_counter(), time.process_time()
    return t1 - t0, t2 - t1, c2 - c1, ids


def main(argv):
    a = parse_args(argv)
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_NO_ORT
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    generate(ort, np, sess, a)  # warm-up: ORT's arena and kernels
    steps = a.new_tokens - 1
    if a.serve:
        print(json.dumps({"ready": True, "onnxruntime": ort.__version__}), flush=True)
        for _ in sys.stdin:
            print(json.dumps(result(ort, generate(ort, np, sess, a), steps)), flush=True)
        return 0
    best = None
    for _ in range(a.reps):
        r = generate(ort, np, sess, a)
        if best is None or r[1] < best[1]:
            best = r
    print(json.dumps(result(ort, best, steps)))
    return 0


def result(ort, run, steps):
    """The JSON object of one timed run (prefill, decode, CPU seconds, ids)."""
    pre, dec, cpu, ids = run
    return {"onnxruntime": ort.__version__, "prefill_ms": pre * 1e3, "decode_ms_per_step": dec * 1e3 / steps,
            "cores_busy": cpu / dec, "ids": ids.tolist()}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

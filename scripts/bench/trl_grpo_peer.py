#!/usr/bin/env python3
"""TRL GRPOTrainer CPU peer for tagpr's GRPO-step benchmark (pipeline).

Builds the causal LM a tagpr config.json describes (as torch_train_peer.py
does: random init, float32, eager attention), a word-level tokenizer whose
token i is the word "t<i>" (so prompts of random ids are plain text), and
runs TRL's GRPOTrainer on CPU: --prompts prompts per step of --prompt-len
random tokens, --generations completions each of exactly --new-tokens
tokens (min_new_tokens = max_completion_length, as tagpr's side ignores
EOS), a cheap reward, one optimizer step per generation batch. It times each
step and the generate calls inside it and prints one JSON object on stdout.

Exit 3 when torch, transformers or trl cannot be imported ("no peer here").
Nothing is fetched from a hub. See README_trl.md beside this file.
"""

import argparse
import zlib
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train_peer import PeerError, build_model, hf_config, read_config  # noqa: E402

PROG = "trl_grpo_peer"
EXIT_NO_TRL = 3


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="tagpr model folder or its config.json")
    p.add_argument("--prompts", type=int, default=4, help="prompts per step")
    p.add_argument("--generations", type=int, default=8, help="completions per prompt (num_generations)")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=64, help="completion tokens (max_completion_length)")
    p.add_argument("--steps", type=int, default=3, help="optimizer steps; the first is warm-up")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--loss-type", default="dapo")
    p.add_argument("--gradient-checkpointing", choices=["on", "off"], default="off",
                   help="TRL's default is on; tagpr does not recompute activations unless asked")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for n in ("prompts", "generations", "prompt_len", "new_tokens", "steps", "threads"):
        if getattr(a, n) <= 0:
            p.error(f"--{n.replace('_', '-')} is {getattr(a, n)}, want > 0")
    return a


def word_tokenizer(vocab):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", pad_token="t0", eos_token="t1", bos_token="t1")


def measure(a):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import torch
        import transformers
        import trl
        from datasets import Dataset
    except ImportError as e:
        print(f"{PROG}: torch/transformers/trl not available: {e}", file=sys.stderr)
        sys.exit(EXIT_NO_TRL)
    torch.set_num_threads(a.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    path, d = read_config(a.config)
    cfg = hf_config(path, d, a.prompt_len + a.new_tokens)
    cfg.use_cache = True  # generation uses the KV cache, as tagpr's does
    torch.manual_seed(a.seed)
    model = build_model(cfg)
    tok = word_tokenizer(cfg.vocab_size)
    g = torch.Generator().manual_seed(a.seed)
    n = a.prompts * a.steps
    ids = torch.randint(2, cfg.vocab_size, (n, a.prompt_len), generator=g)
    data = Dataset.from_dict({"prompt": [" ".join(f"t{int(i)}" for i in row) for row in ids]})

    def reward(completions, **kw):
        return [float(zlib.crc32(c.encode()) % 7) for c in completions]

    gen_s = []
    orig_generate = model.generate

    def timed_generate(*args, **kw):
        t = time.perf_counter()
        out = orig_generate(*args, **kw)
        gen_s.append(time.perf_counter() - t)
        return out

    model.generate = timed_generate
    step_s, marks = [], {}

    class Timer(transformers.TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            marks["t"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            step_s.append(time.perf_counter() - marks["t"])

    out = tempfile.mkdtemp(prefix="trl-grpo-peer-")
    args = trl.GRPOConfig(
        output_dir=out, use_cpu=True, per_device_train_batch_size=a.prompts * a.generations,
        num_generations=a.generations, max_completion_length=a.new_tokens, beta=a.beta, loss_type=a.loss_type,
        learning_rate=1e-6, max_steps=a.steps, logging_steps=1, report_to="none", save_strategy="no",
        gradient_checkpointing=a.gradient_checkpointing == "on", shuffle_dataset=False, seed=a.seed,
        generation_kwargs={"min_new_tokens": a.new_tokens}, dataloader_num_workers=0, bf16=False)
    trainer = trl.GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data, processing_class=tok,
                              callbacks=[Timer()])
    trainer.train()
    if len(step_s) != a.steps or len(gen_s) < a.steps:
        raise PeerError(f"timed {len(step_s)} steps and {len(gen_s)} generate calls, want {a.steps} each")
    timed, gens = step_s[1:] or step_s, gen_s[1:] or gen_s
    return {
        "step_ms": statistics.median(timed) * 1e3,
        "step_ms_min": min(timed) * 1e3,
        "step_ms_each": [s * 1e3 for s in step_s],
        "generate_ms": statistics.median(gens) * 1e3,
        "generate_ms_each": [s * 1e3 for s in gen_s],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
        "prompts": a.prompts, "generations": a.generations, "prompt_len": a.prompt_len, "new_tokens": a.new_tokens,
        "steps": a.steps, "beta": a.beta, "loss_type": a.loss_type, "gradient_checkpointing": a.gradient_checkpointing,
    }


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    real_stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = measure(a)
    except PeerError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        print(f"{PROG}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    real_stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

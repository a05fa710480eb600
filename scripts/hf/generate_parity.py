#!/usr/bin/env python3
"""Check tagpr's generation against transformers' `generate` on checkpoints a user brings.

For Qwen2.5-, Qwen3- and Llama-3.1-shaped models (tiny, random weights, the real vocabularies and
tokenizers from .cache/tokenizers, the families' generation_config.json with eos_token_id as a list) this
script saves each checkpoint with save_pretrained, imports it with `tagpr model import-hf`, and compares:

  1. greedy ids over --tokens new tokens for three uneven prompts, tagpr's in one left-padded batch, transformers'
     each alone (`tagpr model generate --ids … --temperature 0` against `model.generate(do_sample=False)`), with the
     family's generation_config.json as saved and again with repetition_penalty 1.3,
  2. a chat: `tagpr model generate --chat` (and --enable-thinking=false for Qwen3) against
     apply_chat_template(add_generation_prompt=True) + generate + decode(skip_special_tokens=True).

Both sides take the families' generation_config.json as saved, so Qwen2.5's repetition_penalty 1.05 applies to
the greedy runs on both (transformers applies it with do_sample=False; `tagpr model generate` takes it as the default
of --repetition-penalty). A second greedy run per family sets --repetition-penalty 1.3 against repetition_penalty=1.3.
Greedy steps whose top-1/top-2 margin is under 1e-4 are reported, since float rounding may flip them.

    /work/venv-trl/bin/python scripts/hf/generate_parity.py [--tagpr bin/tagpr] [--tokens 80] [--keep DIR]

Run from the repository root after `make build` (no hub access needed). Exit status 1 on any mismatch.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, Qwen2Config, Qwen3Config

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tokenize"))
from hf_chat import LLAMA31, QWEN25  # noqa: E402  (the templates the chat fixtures use)

COMMON = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=1000000.0)

FAMILIES = {
    "qwen2.5": (lambda: Qwen2Config(vocab_size=151936, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645, **COMMON),
                "qwen3", QWEN25,
                dict(bos_token_id=151643, pad_token_id=151643, do_sample=True, eos_token_id=[151645, 151643],
                     repetition_penalty=1.05, temperature=0.7, top_p=0.8, top_k=20),
                [[9707, 11, 1246, 525, 498, 30], [40, 1079, 264], [785, 3974, 13876, 38835, 34208, 916, 279, 15678, 5562, 13, 576]]),
    "qwen3": (lambda: Qwen3Config(vocab_size=151936, head_dim=16, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645, **COMMON),
              "qwen3", None,
              dict(bos_token_id=151643, pad_token_id=151643, do_sample=True, eos_token_id=[151645, 151643],
                   temperature=0.6, top_p=0.95, top_k=20),
              [[9707, 11, 1246, 525, 498, 30], [40, 1079, 264], [785, 3974, 13876, 38835, 34208, 916, 279, 15678, 5562, 13, 576]]),
    "llama3.1": (lambda: LlamaConfig(vocab_size=128256, tie_word_embeddings=True, bos_token_id=128000, eos_token_id=[128001, 128008, 128009], **COMMON),
                 "llama3", LLAMA31,
                 dict(bos_token_id=128000, do_sample=True, eos_token_id=[128001, 128008, 128009], temperature=0.6, top_p=0.9),
                 [[128000, 9906, 11, 1268, 527, 499, 30], [128000, 40, 1097], [128000, 791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679, 13, 578]]),
}

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>easy</think>4"}, {"role": "user", "content": " And 3+3? "}]


def randomize(model, seed):
    """Values at a scale where greedy margins are wide enough to compare (as scripts/fixtures/hf_fixtures.py)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim == 1 and "norm" in name:
                v = 1 + 0.2 * torch.randn(p.shape, generator=g)
            elif p.ndim == 1:
                v = 0.1 * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in name:
                v = 0.5 * torch.randn(p.shape, generator=g)
            else:
                v = torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1])
                if name.endswith(("o_proj.weight", "down_proj.weight")):
                    v = v * 4
            p.copy_(v)


def tagpr(args, *cmd):
    out = subprocess.run([args.tagpr, *cmd], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"tagpr {' '.join(cmd)}: exit {out.returncode}\n{out.stderr}")
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tagpr", default="bin/tagpr")
    ap.add_argument("--tokens", type=int, default=80)
    ap.add_argument("--keep", help="folder to keep the checkpoints and imports in")
    args = ap.parse_args()
    root = args.keep or tempfile.mkdtemp(prefix="tagpr-genparity-")
    bad = 0
    for name, (cfg, tokname, template, gen, prompts) in FAMILIES.items():
        hf_dir, onnx_dir = os.path.join(root, name + "-hf"), os.path.join(root, name + "-onnx")
        model = AutoModelForCausalLM.from_config(cfg()).float().eval()
        randomize(model, 7)
        model.generation_config = GenerationConfig(**gen)
        model.save_pretrained(hf_dir)
        tok = AutoTokenizer.from_pretrained(f".cache/tokenizers/{tokname}", local_files_only=True)
        if template:
            tok.chat_template = template
        tok.save_pretrained(hf_dir)
        tagpr(args, "model", "import-hf", hf_dir, "--out", onnx_dir, "--force")

        # 1. Greedy ids of uneven prompts, plain (the file's penalty) and with repetition_penalty 1.3.
        for penalty in [None, 1.3]:
            # tagpr runs the three prompts as one left-padded batch; transformers runs each alone, since its
            # repetition_penalty also counts a padded row's pad tokens (tagpr's counts the prompt's own).
            flags = [] if penalty is None else ["--repetition-penalty", str(penalty)]
            batch = json.loads(tagpr(args, "model", "generate", onnx_dir, "--ids", ";".join(",".join(map(str, p)) for p in prompts),
                                     "--max-new-tokens", str(args.tokens), "--temperature", "0", "--json", *flags))["completions"]
            for i, p in enumerate(prompts):
                kw = {} if penalty is None else {"repetition_penalty": penalty}
                with torch.no_grad():
                    out = model.generate(input_ids=torch.tensor([p]), do_sample=False, max_new_tokens=args.tokens,
                                         output_scores=True, return_dict_in_generate=True, **kw)
                want = out.sequences[0, len(p):].tolist()
                top2 = torch.stack(out.scores, 1)[0].topk(2, -1).values
                margin = float((top2[:, 0] - top2[:, 1]).min())
                got = batch[i]
                ok = got["token_ids"] == want[:len(got["token_ids"])]
                bad += not ok
                label = f"repetition_penalty {(model.generation_config.repetition_penalty or 1.0) if penalty is None else penalty}"
                print(f"{name} greedy row {i} ({len(p)} prompt tokens, {label}): {len(got['token_ids'])} tokens {'equal' if ok else 'DIFFER'}"
                      f" (min top-1/top-2 margin {margin:.2g}{', near tie' if margin < 1e-4 else ''})")

        # 2. A chat, rendered by the template, decoded without special tokens.
        for kw, flags in [({}, [])] + ([({"enable_thinking": False}, ["--enable-thinking=false"])] if name == "qwen3" else []):
            enc = tok.apply_chat_template(CHAT[:1] + CHAT[3:], add_generation_prompt=True, return_tensors="pt", return_dict=True, **kw)
            with torch.no_grad():
                o = model.generate(**enc, do_sample=False, max_new_tokens=40)
            want_text = tok.decode(o[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            res = json.loads(tagpr(args, "model", "generate", onnx_dir, "--system", CHAT[0]["content"], "--chat", CHAT[3]["content"],
                                   "--max-new-tokens", "40", "--temperature", "0", "--json", *flags))
            ok = res["completions"][0]["text"] == want_text and res["stats"]["prompt_tokens"] == enc["input_ids"].shape[1]
            bad += not ok
            print(f"{name} chat {kw or ''}: {res['stats']['prompt_tokens']} prompt tokens (transformers {enc['input_ids'].shape[1]}), "
                  f"text {'equal' if ok else 'DIFFERS'}")
    print("all equal" if bad == 0 else f"{bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

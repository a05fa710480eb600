#!/usr/bin/env python3
"""Check that transformers and PEFT load tagpr's Hugging Face exports and compute what tagpr's ONNX models do.

Not part of CI (it needs torch, transformers and peft); run it by hand after changing the export:

    go build -o bin/tagpr ./cmd/tagpr
    /path/to/python scripts/hf/verify_exports.py [--tagpr bin/tagpr]

For each base model — tiny Qwen2 (tied), Qwen3 and Mistral checkpoints from onnx/testdata/hf (imported with
`tagpr model import-hf`), the Optimum GPT-2 (tied, Conv1D) and Llama exports from onnx/testdata/pytorch, and a
built-in llama from `tagpr model init` — it runs `tagpr train lm` twice on random token ids: full fine-tuning and
LoRA. Then:
  * full: AutoModelForCausalLM.from_pretrained(RUN) logits vs ONNX Runtime on RUN/model.onnx;
  * LoRA: PeftModel.from_pretrained(base, RUN/adapter) over the base checkpoint, and from_pretrained(RUN) (the
    merged weights), each vs ONNX Runtime on RUN/model.onnx (adapters merged).
Logits are compared at every real position of a left-padded batch; the script fails above 1e-5.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import peft
import torch
import transformers
from peft import PeftModel
from transformers import AutoModelForCausalLM

TOL = 1e-5
REPO = Path(__file__).resolve().parents[2]


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def batch(vocab: int):
    rng = np.random.default_rng(7)
    t, real = 9, [9, 5]
    ids = np.zeros((2, t), dtype=np.int64)
    mask = np.zeros((2, t), dtype=np.int64)
    for b, n in enumerate(real):
        ids[b, t - n :] = rng.integers(3, vocab, size=n)
        mask[b, t - n :] = 1
    pos = np.cumsum(mask, -1) - 1
    pos[mask == 0] = 1
    return ids, mask, pos


def onnx_logits(model_dir: Path, ids, mask, pos):
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feed[i.name] = ids
        elif i.name == "attention_mask":
            feed[i.name] = mask
        elif i.name == "position_ids":
            feed[i.name] = pos
        elif i.name.startswith("past_key_values."):
            feed[i.name] = np.zeros((ids.shape[0], i.shape[1], 0, i.shape[3]), dtype=np.float32)
        else:
            sys.exit(f"{model_dir}: unexpected input {i.name}")
    return sess.run(["logits"], feed)[0]


def torch_logits(model, ids, mask, pos):
    with torch.no_grad():
        return model(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), position_ids=torch.from_numpy(pos)
        ).logits.float().numpy()


def diff(a, b, mask):
    return float(np.abs(a - b)[mask.astype(bool)].max())


def load(path):
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, attn_implementation="eager").eval()


def data(path: Path, vocab: int):
    rng = np.random.default_rng(3)
    with path.open("w") as f:
        for _ in range(24):
            f.write(json.dumps({"input_ids": rng.integers(3, vocab, size=12).tolist()}) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tagpr", default=str(REPO / "bin" / "tagpr"))
    args = ap.parse_args()
    tagpr = args.tagpr
    print(f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}, onnxruntime {ort.__version__}")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="tagpr-hf-verify-") as tmp:
        tmp = Path(tmp)
        bases = {}  # name → (ONNX model folder for training, HF checkpoint folder for PEFT's base)
        for name in ["qwen2", "qwen3", "mistral"]:
            src = REPO / "onnx" / "testdata" / "hf" / name
            run([tagpr, "model", "import-hf", src, "--out", tmp / f"{name}-onnx"])
            bases[name] = (tmp / f"{name}-onnx", src)
        for name in ["gpt2", "llama"]:
            src = REPO / "onnx" / "testdata" / "pytorch" / name
            run([tagpr, "model", "export-hf", src, "--out", tmp / f"{name}-hf"])
            bases[f"optimum-{name}"] = (src, tmp / f"{name}-hf")
        run([tagpr, "model", "init", "--arch", "llama", "--layers", "2", "--d-model", "32", "--heads", "4", "--kv-heads", "2",
             "--vocab", "96", "--max-positions", "64", "--seed", "5", "--init-std", "0.2", "--out", tmp / "builtin"])
        run([tagpr, "model", "export-hf", tmp / "builtin", "--out", tmp / "builtin-hf"])
        bases["builtin-llama"] = (tmp / "builtin", tmp / "builtin-hf")

        for name, (model, hf_base) in bases.items():
            vocab = json.loads((hf_base / "config.json").read_text())["vocab_size"]
            data(tmp / "d.jsonl", vocab)
            ids, mask, pos = batch(vocab)
            common = ["--data", tmp / "d.jsonl", "--steps", "6", "--batch", "4", "--seq-len", "12", "--lr", "1e-2", "--warmup", "0"]
            full, lora = tmp / f"{name}-full", tmp / f"{name}-lora"
            run([tagpr, "train", "lm", "--model", model, "--out", full] + common)
            run([tagpr, "train", "lm", "--model", model, "--out", lora, "--lora-rank", "4", "--lora-alpha", "8"] + common)

            ref_full = onnx_logits(full, ids, mask, pos)
            d_full = diff(torch_logits(load(full), ids, mask, pos), ref_full, mask)
            base_logits = torch_logits(load(hf_base), ids, mask, pos)
            ref_lora = onnx_logits(lora, ids, mask, pos)
            pm = PeftModel.from_pretrained(load(hf_base), str(lora / "adapter")).eval()
            d_peft = diff(torch_logits(pm, ids, mask, pos), ref_lora, mask)
            d_merged = diff(torch_logits(load(lora), ids, mask, pos), ref_lora, mask)
            moved = diff(base_logits, ref_lora, mask)
            targets = json.loads((lora / "adapter" / "adapter_config.json").read_text())["target_modules"]
            print(f"{name:14s} full: from_pretrained vs ONNX {d_full:.2e} | LoRA ({','.join(targets)}): PeftModel vs ONNX "
                  f"{d_peft:.2e}, merged from_pretrained vs ONNX {d_merged:.2e} (LoRA moved logits by {moved:.2e})")
            worst = max(worst, d_full, d_peft, d_merged)
            if moved < 1e-4:
                sys.exit(f"{name}: the LoRA run did not change the model; the PEFT check proves nothing")
    print(f"worst |Δ logits| {worst:.2e} (tolerance {TOL:g})")
    if worst > TOL:
        sys.exit("FAIL")
    print("OK")


if __name__ == "__main__":
    main()

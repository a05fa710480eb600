#!/usr/bin/env python3
"""Run `tagpr train lm` and TRL's SFTTrainer on the same tiny model and data, compare step by step.

The by-hand companion of scripts/train/trl_sft_fixture.py (whose recorded runs CI checks): it covers
the cases the fixture does not, each as one --case:

  full       full fine-tuning (accumulation, weight decay, clipping, --schedule)
  lora       LoRA rank 4 on every projection against PEFT (lora_alpha 8 = tagpr's default 2·rank);
             tagpr's initial A is read from a one-update run at lr 1e-30, B starts at 0 on both sides
  packing    --packing against SFTConfig(packing=True) (best-fit decreasing, padding-free)
  trainable  --trainable q_proj,input_layernorm against a model with every other weight frozen

The model is a random Qwen2 (vocab 128, hidden 32, 2 layers, tied head) built from a config, the data 4
rows of token ids; every step holds every row, so the Trainer's shuffling cannot matter. Warmup is 0:
tagpr's warmup runs update k at (k+1)/W of the peak, transformers' at k/W (docs/training-on-ort.md).
Prints one JSON object (the last line: the Trainer prints its summary too): the largest differences of loss, grad_norm, learning rate and weights.

  /work/venv-trl/bin/python scripts/train/trl_sft_peer.py --tagpr bin/tagpr --case lora
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, Qwen2Config
from trl import SFTConfig, SFTTrainer

STEPS, BATCH, ACCUM, SEQ, LR, WD, CLIP = 12, 2, 2, 20, 1e-2, 0.1, 0.5


def tagpr_run(tagpr, d, out, extra, steps=STEPS, lr=LR, batch=BATCH, accum=ACCUM, schedule="linear"):
    args = [tagpr, "train", "lm", "--model", os.path.join(d, "onnx"), "--data", os.path.join(d, "data.jsonl"), "--out", out,
            "--steps", str(steps), "--batch", str(batch), "--accum", str(accum), "--seq-len", str(SEQ), "--lr", str(lr),
            "--warmup", "0", "--weight-decay", str(WD), "--clip", str(CLIP), "--schedule", schedule] + extra
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [json.loads(line) for line in open(os.path.join(out, "checkpoint", "train_log.jsonl"))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tagpr", default="bin/tagpr")
    ap.add_argument("--case", choices=["full", "lora", "packing", "trainable"], default="full")
    a = ap.parse_args()
    tagpr = os.path.abspath(a.tagpr)
    d = tempfile.mkdtemp(prefix="trl_sft_peer_")
    try:
        torch.manual_seed(0)
        cfg = Qwen2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0)
        AutoModelForCausalLM.from_config(cfg).save_pretrained(os.path.join(d, "hf"))
        rng = np.random.default_rng(1)
        rows = [{"input_ids": [int(x) for x in rng.integers(3, 128, size=int(rng.integers(3, SEQ - 1)))] + [2]} for _ in range(BATCH * ACCUM)]
        with open(os.path.join(d, "data.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        subprocess.run([tagpr, "model", "import-hf", os.path.join(d, "hf"), "--out", os.path.join(d, "onnx")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        model = AutoModelForCausalLM.from_pretrained(os.path.join(d, "hf"), dtype=torch.float32, attn_implementation="eager")
        extra, sft = [], dict(per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUM)
        if a.case == "lora":
            extra = ["--lora-rank", "4"]
            tagpr_run(tagpr, d, os.path.join(d, "init"), extra, steps=1, lr=1e-30, schedule="constant")
            from peft import PeftModel
            model = PeftModel.from_pretrained(model, os.path.join(d, "init", "adapter"), is_trainable=True)
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if "lora_B" in n:
                        p.zero_()
        elif a.case == "packing":
            # 4 rows of < 20 tokens pack into fewer rows; --batch counts packed rows: take them all.
            lens = [len(r["input_ids"]) for r in rows]
            extra = ["--packing"]
            sft = dict(per_device_train_batch_size=len(packed_rows(lens, SEQ)), gradient_accumulation_steps=1, packing=True)
        elif a.case == "trainable":
            extra = ["--trainable", "q_proj,input_layernorm"]
            for n, p in model.named_parameters():
                p.requires_grad = "q_proj" in n or "input_layernorm" in n
        b, acc = sft["per_device_train_batch_size"], sft["gradient_accumulation_steps"]
        log = tagpr_run(tagpr, d, os.path.join(d, "run"), extra, batch=b, accum=acc)

        args = SFTConfig(output_dir=os.path.join(d, "trl"), use_cpu=True, bf16=False, max_steps=STEPS, learning_rate=LR,
                         warmup_steps=0, lr_scheduler_type="linear", weight_decay=WD, max_grad_norm=CLIP, logging_steps=1,
                         report_to=[], save_strategy="no", seed=0, max_length=SEQ, optim="adamw_torch", **sft)
        tr = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows))
        tr.train()
        hist = [h for h in tr.state.log_history if "loss" in h]
        lsd = {k.replace(".default", ""): v.clone() for k, v in tr.model.state_dict().items() if "lora" in k}
        trained = tr.model.merge_and_unload() if a.case == "lora" else tr.model
        sd = trained.state_dict()
        tw = load_file(os.path.join(d, "run", "model.safetensors"))
        res = {
            "case": a.case, "steps": len(hist),
            "loss": max(abs(h["loss"] - t["loss"]) for h, t in zip(hist, log)),
            "grad_norm": max(abs(h["grad_norm"] - t["grad_norm"]) for h, t in zip(hist, log)),
            "lr": max(abs(h["learning_rate"] - t["lr"]) for h, t in zip(hist, log)),
            "weights": max((sd[k] - tw[k]).abs().max().item() for k in tw),
            "moved": max((load_file(os.path.join(d, "hf", "model.safetensors"))[k] - tw[k]).abs().max().item() for k in tw),
        }
        if a.case == "lora":
            ad = load_file(os.path.join(d, "run", "adapter", "adapter_model.safetensors"))
            res["adapter"] = max((lsd[k] - ad[k]).abs().max().item() for k in ad)
        print(json.dumps(res))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def packed_rows(lens, seq):
    """tagpr's PackRows: best-fit decreasing (for the row count only)."""
    rows = []
    for n in sorted(lens, reverse=True):
        fit = [i for i, r in enumerate(rows) if seq - r >= n]
        if fit:
            i = min(fit, key=lambda i: seq - rows[i])
            rows[i] += n
        else:
            rows.append(min(n, seq))
    return rows


if __name__ == "__main__":
    sys.exit(main())

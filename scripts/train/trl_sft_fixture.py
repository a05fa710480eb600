#!/usr/bin/env python3
"""Record what TRL's SFTTrainer and transformers' schedulers do, for Go tests without Python.

Writes cmd/tagpr/testdata/trl_sft/:

  data.jsonl          rows of token ids (vocab 96, each ending with EOS 2): the `train lm` data
  expected.json       per run: the `train lm` flags, and TRL's log per step (loss, grad_norm,
                      learning_rate); the transformers schedules (lr of each update) for the
                      schedule test; the versions
  <run>.safetensors   the weights after the run (float32, transformers' names, tied head left out)

The model is onnx/testdata/hf/qwen2 (stored bfloat16, so float32 copies are exact on both sides).
Each step's batch is every row (--batch × --accum = rows), so the random order of the Trainer's
sampler cannot matter: with transformers' loss normalisation over the accumulated batch's target
tokens the step's gradient is the same sum whatever the micro-batches hold.

Nothing is downloaded. Run with a Python that has torch, transformers, trl and datasets
(checked with torch 2.15, transformers 5.25, trl 1.16):

  /work/venv-trl/bin/python scripts/train/trl_sft_fixture.py
"""
import json
import os
import shutil
import sys
import tempfile

import torch
import transformers
import trl
from datasets import Dataset
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, get_scheduler
from trl import SFTConfig, SFTTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = os.path.join(ROOT, "onnx", "testdata", "hf", "qwen2")
OUT = os.path.join(ROOT, "cmd", "tagpr", "testdata", "trl_sft")
EOS, VOCAB = 2, 96

# Rows of 4 to 15 tokens (unequal target counts per micro-batch).
ROWS = []
for i in range(6):
    n = 4 + (i * 7) % 12
    ROWS.append({"input_ids": [3 + (i * 31 + j * j * 7 + j * 3) % (VOCAB - 3) for j in range(n - 1)] + [EOS]})

# name: (train lm flags, SFTConfig fields)
RUNS = {
    # Full fine-tuning, accumulation over micro-batches of unequal target counts, weight decay
    # (not on biases and norm gains: both sides), clipping below the gradient norm, linear decay.
    "full_linear": (
        {"steps": 10, "batch": 2, "accum": 3, "seq-len": 16, "lr": 1e-2, "warmup": 0, "weight-decay": 0.1,
         "clip": 0.5, "schedule": "linear"},
        dict(per_device_train_batch_size=2, gradient_accumulation_steps=3, max_steps=10, learning_rate=1e-2,
             warmup_steps=0, lr_scheduler_type="linear", weight_decay=0.1, max_grad_norm=0.5),
    ),
    # One micro-batch of every row, cosine decay, no clipping.
    "full_cosine": (
        {"steps": 8, "batch": 6, "accum": 1, "seq-len": 16, "lr": 5e-3, "warmup": 0, "weight-decay": 0.0,
         "clip": 0, "schedule": "cosine"},
        dict(per_device_train_batch_size=6, gradient_accumulation_steps=1, max_steps=8, learning_rate=5e-3,
             warmup_steps=0, lr_scheduler_type="cosine", weight_decay=0.0, max_grad_norm=0.0),
    ),
}

# Schedules: (transformers name, kwargs, train lm / Schedule fields)
SCHEDULES = [
    ("cosine", {}, {"decay": "cosine", "min_ratio": 0}),
    ("linear", {}, {"decay": "linear", "min_ratio": 0}),
    ("constant_with_warmup", {}, {"decay": "constant", "min_ratio": 0}),
    ("cosine_with_min_lr", {"min_lr_rate": 0.1}, {"decay": "cosine", "min_ratio": 0.1}),
]


def schedules():
    out = []
    for name, kw, fields in SCHEDULES:
        for warmup, total in [(0, 12), (3, 12), (5, 20)]:
            p = torch.nn.Parameter(torch.zeros(1))
            opt = torch.optim.SGD([p], lr=3e-4)
            sch = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total, scheduler_specific_kwargs=kw)
            lrs = []
            for _ in range(total):
                lrs.append(opt.param_groups[0]["lr"])  # the rate of this update
                opt.step()
                sch.step()
            out.append({"transformers": name, "peak": 3e-4, "warmup": warmup, "total": total, **fields, "lr": lrs})
    return out


def train(flags, cfg, data, tmp):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32, attn_implementation="eager")
    args = SFTConfig(output_dir=os.path.join(tmp, "out"), use_cpu=True, bf16=False, logging_steps=1, report_to=[],
                     save_strategy="no", seed=0, max_length=flags["seq-len"], optim="adamw_torch", **cfg)
    tr = SFTTrainer(model=model, args=args, train_dataset=data)
    tr.train()
    log = [{"step": h["step"], "loss": h["loss"], "grad_norm": h.get("grad_norm"), "learning_rate": h["learning_rate"]}
           for h in tr.state.log_history if "loss" in h]
    if len(log) != flags["steps"]:
        sys.exit(f"{len(log)} logged steps, want {flags['steps']}")
    sd = {k: v.detach().contiguous() for k, v in tr.model.state_dict().items() if k != "lm_head.weight"}
    return log, sd


def main():
    if len(ROWS) % 2:
        sys.exit("rows must fill the runs' steps")
    for name, (flags, _) in RUNS.items():
        if flags["batch"] * flags["accum"] != len(ROWS):
            sys.exit(f"{name}: a step must hold every row")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "data.jsonl"), "w") as f:
        for r in ROWS:
            f.write(json.dumps(r) + "\n")
    data = Dataset.from_list(ROWS)
    expected = {"versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "trl": trl.__version__},
                "runs": {}, "schedules": schedules()}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (flags, cfg) in RUNS.items():
            log, sd = train(flags, cfg, data, tmp)
            save_file(sd, os.path.join(OUT, name + ".safetensors"))
            expected["runs"][name] = {"flags": flags, "log": log}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()

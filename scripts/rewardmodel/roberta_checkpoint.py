#!/usr/bin/env python3
"""Write rewardmodel/testdata/encoder-roberta/: a tiny random RoBERTa text encoder as a transformers checkpoint.

What it writes:
  model.safetensors, config.json  RobertaModel (2 layers, hidden 32, 4 heads, FFN 64, 66 positions, one token
                                  type, pad 1), seed 20261216, weights drawn with std 0.2, saved with save_pretrained
  tokenizer.json (+ tokenizer_config.json, special_tokens_map.json)
                                  a byte-level BPE of 400 tokens trained here on the encoder fixture's words,
                                  <s> $A </s> (RobertaProcessing), model_max_length 48
  1_Pooling/config.json           sentence-transformers' pooling config (mean)
  reference.json                  the encoder fixture's ten texts, their ids from the HF tokenizer (truncated to 48)
                                  and PyTorch's pooled embeddings, mean and cls, in the encoder fixture's format

RoBERTa numbers positions from the padding id (transformers' create_position_ids_from_input_ids); the check
that a padded batch gives each text's embedding alone is recorded in reference.json. The encoder is random.

Exact versions: torch 2.15.0, transformers 5.25.0, tokenizers 0.22. Nothing is downloaded.
Running it twice gives identical files.

Usage: /work/venv-trl/bin/python scripts/rewardmodel/roberta_checkpoint.py [--out rewardmodel/testdata/encoder-roberta]
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

SEED = 20261216
MAX_LENGTH = 48
SRC = Path("rewardmodel/testdata/encoder")
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="rewardmodel/testdata/encoder-roberta")
    out = Path(ap.parse_args().out)
    ref_in = json.loads((SRC / "reference.json").read_text())
    texts = [t["text"] for t in ref_in["texts"]]
    vocab_words = (SRC / "vocab.txt").read_text().split()

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts + [" ".join(vocab_words)], trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   sep_token="</s>", cls_token="<s>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=MAX_LENGTH)
    assert fast.pad_token_id == 1, fast.pad_token_id

    torch.manual_seed(SEED)
    cfg = RobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=MAX_LENGTH + 18, type_vocab_size=1,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.2,
                        pad_token_id=1, bos_token_id=0, eos_token_id=2)
    cfg._attn_implementation = "eager"
    model = RobertaModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():  # LayerNorm gains and biases away from 1 and 0, so a missing one shows
        for n, p in model.named_parameters():
            if "LayerNorm" in n:
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if n.endswith("weight") else 0.0))

    rows, worst_pad = [], 0.0
    enc = fast(texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    with torch.no_grad():
        batched = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        for i, text in enumerate(texts):
            ids = fast(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]
            x = torch.tensor([ids])
            h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0]
            mean = h.mean(0)
            n = len(ids)
            worst_pad = max(worst_pad, float((batched[i, :n] - h).abs().max()))
            rows.append({"text": text, "ids": ids, "mean": [float(v) for v in mean], "cls": [float(v) for v in h[0]]})

    if out.exists():  # the folder's README.md is kept
        for f in out.iterdir():
            if f.name != "README.md":
                shutil.rmtree(f) if f.is_dir() else f.unlink()
    model.save_pretrained(str(out), safe_serialization=True)
    fast.save_pretrained(str(out))
    for f in ["vocab.json", "merges.txt"]:
        (out / f).unlink(missing_ok=True)
    (out / "1_Pooling").mkdir()
    shutil.copy(SRC / "1_Pooling" / "config.json", out / "1_Pooling" / "config.json")
    ref = {
        "seed": SEED, "max_length": MAX_LENGTH, "hidden_size": cfg.hidden_size,
        "pooling": "mean (masked sum / max(count, 1e-9)) and cls (position 0) of last_hidden_state",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "numpy": np.__version__},
        "checks": {"padded_batch_vs_single": worst_pad},
        "texts": rows,
    }
    (out / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {out}: vocab {cfg.vocab_size}, padded vs single {worst_pad:.2e}")


if __name__ == "__main__":
    main()

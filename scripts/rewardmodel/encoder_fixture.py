"""What roberta_checkpoint.py, mpnet_checkpoint.py and xlmr_checkpoint.py share: the tiny encoders' sizes and
RoBERTa-style special tokens, the encoder fixture's texts, PyTorch's pooled embeddings of them in
testdata/encoder/reference.json's format, and writing a checkpoint fixture folder.

Not run by itself: `python scripts/rewardmodel/roberta_checkpoint.py` imports it from this folder.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json
import shutil
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers

MAX_LENGTH = 48
SRC = Path("rewardmodel/testdata/encoder")


# The tiny encoders' sizes (2 layers, hidden 32, 4 heads, FFN 64, 66 positions, no dropout, weights drawn with std
# 0.2) and RoBERTa-style ids for <s>, <pad>, </s>.
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=MAX_LENGTH + 18, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            initializer_range=0.2, pad_token_id=1, bos_token_id=0, eos_token_id=2)


def roberta_style_fast(**source):
    """A PreTrainedTokenizerFast (from tokenizer_object= or tokenizer_file=) with <s> </s> <unk> <pad> <mask> as
    RoBERTa names them, pad id 1, model_max_length MAX_LENGTH."""
    fast = transformers.PreTrainedTokenizerFast(**source, bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="</s>",
                                   cls_token="<s>", pad_token="<pad>", mask_token="<mask>", model_max_length=MAX_LENGTH)
    assert fast.pad_token_id == 1, fast.pad_token_id
    return fast


def texts():
    """The encoder fixture's ten texts (one longer than MAX_LENGTH tokens, one empty)."""
    return [t["text"] for t in json.loads((SRC / "reference.json").read_text())["texts"]]


def redraw_norms(model, extra=()):
    """LayerNorm gains and biases away from 1 and 0 (and the named extra tensors redrawn), so a missing one shows."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "LayerNorm" in n:
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if n.endswith("weight") else 0.0))
            if any(e in n for e in extra):
                p.copy_(torch.randn_like(p))


def reference_rows(model, fast, texts):
    """Each text's ids (truncated to MAX_LENGTH) and PyTorch's mean and CLS pooled embeddings, and the largest
    difference a padded batch makes."""
    rows, worst = [], 0.0
    enc = fast(texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    with torch.no_grad():
        batched = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        for i, text in enumerate(texts):
            ids = fast(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]
            x = torch.tensor([ids])
            h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0]
            worst = max(worst, float((batched[i, :len(ids)] - h).abs().max()))
            rows.append({"text": text, "ids": ids, "mean": [float(v) for v in h.mean(0)], "cls": [float(v) for v in h[0]]})
    return rows, worst


def write_fixture(out, model, fast, seed, rows, worst, extra=None):
    """Writes the checkpoint, tokenizer, mean pooling config and reference.json into out (its README.md kept)."""
    out = Path(out)
    if out.exists():
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
        "seed": seed, "max_length": MAX_LENGTH, "hidden_size": model.config.hidden_size,
        "pooling": "mean (masked sum / max(count, 1e-9)) and cls (position 0) of last_hidden_state",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "numpy": np.__version__},
        "checks": {"padded_batch_vs_single": worst},
        "texts": rows,
    }
    ref.update(extra or {})
    (out / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {out}: vocab {model.config.vocab_size}, padded vs single {worst:.2e}")

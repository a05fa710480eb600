#!/usr/bin/env python3
"""Write rewardmodel/testdata/encoder-mpnet/: a tiny random MPNet text encoder as a transformers checkpoint.

MPNet is all-mpnet-base-v2's architecture: RoBERTa-style positions (counted from padding index 1), no token
types, and a bias per attention head looked up from each relative position's bucket (MPNetEncoder's
relative_position_bucket: 32 buckets, max distance 128) and added to every layer's attention scores.

What it writes:
  model.safetensors, config.json  MPNetModel (2 layers, hidden 32, 4 heads, FFN 64, 66 positions), seed 20261217,
                                  weights drawn with std 0.2, LayerNorm gains and biases redrawn, no pooler
  tokenizer.json (+ tokenizer_config.json)
                                  the encoder fixture's WordPiece vocabulary with MPNet's specials (<s> 0, <pad> 1,
                                  </s> 2, <unk> 3, <mask> 4) in place of BERT's, BERT normalizer and pre-tokenizer,
                                  <s> $A </s>, model_max_length 48, as all-mpnet-base-v2's tokenizer is built
  1_Pooling/config.json           mean pooling
  reference.json                  the encoder fixture's ten texts, their ids from the HF tokenizer and PyTorch's pooled
                                  embeddings (mean, cls), in the encoder fixture's format; and relative_buckets:
                                  torch's bucket of every relative position from -513 to 513 (all-mpnet-base-v2's
                                  514 positions), which tagpr's table must equal

Exact versions: torch 2.15.0, transformers 5.25.0, tokenizers 0.22. Nothing is downloaded.
Running it twice gives identical files (the folder's README.md is kept).

Usage: /work/venv-trl/bin/python scripts/rewardmodel/mpnet_checkpoint.py [--out rewardmodel/testdata/encoder-mpnet]
"""

import argparse

from encoder_fixture import SRC, TINY, redraw_norms, reference_rows, roberta_style_fast, texts, write_fixture  # first: it keeps transformers offline

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import MPNetConfig, MPNetModel
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

SEED = 20261217
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="rewardmodel/testdata/encoder-mpnet")
    out = ap.parse_args().out
    words = [w for w in (SRC / "vocab.txt").read_text().split("\n") if w and not (w.startswith("[") and w.endswith("]"))]
    vocab = {w: i for i, w in enumerate(SPECIALS + words)}

    tok = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = roberta_style_fast(tokenizer_object=tok)

    torch.manual_seed(SEED)
    cfg = MPNetConfig(vocab_size=len(vocab), **TINY)
    cfg._attn_implementation = "eager"
    model = MPNetModel(cfg, add_pooling_layer=False).eval()
    redraw_norms(model, extra=["relative_attention_bias"])  # a strong position bias, so it shows
    rows, worst = reference_rows(model, fast, texts())
    buckets = MPNetEncoder.relative_position_bucket(torch.arange(-513, 514, dtype=torch.long)).tolist()
    write_fixture(out, model, fast, SEED, rows, worst, extra={"relative_buckets": {"from": -513, "buckets": buckets}})


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write rewardmodel/testdata/encoder-xlmr/: a tiny random XLM-RoBERTa text encoder as a transformers checkpoint.

What it writes:
  model.safetensors, config.json  XLMRobertaModel (2 layers, hidden 32, 4 heads, FFN 64, 66 positions, one token
                                  type, pad 1), seed 20261208, weights drawn with std 0.2, saved with save_pretrained
  tokenizer_config.json (+ special_tokens_map.json)
                                  for tokenize/testdata/sentencepiece/unigram/tokenizer.json: a sentencepiece
                                  Unigram of 8,002 pieces in XLM-R's shape (Precompiled nmt_nfkc charsmap,
                                  Metaspace, <s> $A </s>), model_max_length 48. Its tokenizer.json is not copied
                                  here (800 KB): the tests put it beside the checkpoint.
  1_Pooling/config.json           sentence-transformers' pooling config (mean)
  reference.json                  the encoder fixture's ten texts and six multilingual ones (full-width forms,
                                  ligatures, accents, scripts the vocabulary lacks), their ids from the HF tokenizer
                                  (truncated to 48) and PyTorch's pooled embeddings, mean and cls

XLM-R's architecture is RoBERTa's (positions counted from the padding id); multilingual-e5, bge-m3 and
paraphrase-multilingual-* are built on it. The encoder is random.

Exact versions: torch 2.15.0, transformers 5.25.0, tokenizers 0.23.3. Nothing is downloaded.

Usage: /work/venv-trl/bin/python scripts/rewardmodel/xlmr_checkpoint.py [--out rewardmodel/testdata/encoder-xlmr]
"""

import argparse
from pathlib import Path

from encoder_fixture import TINY, redraw_norms, reference_rows, roberta_style_fast, texts, write_fixture  # first: it keeps transformers offline

import torch
from transformers import XLMRobertaConfig, XLMRobertaModel

SEED = 20261208
TOKENIZER = "tokenize/testdata/sentencepiece/unigram/tokenizer.json"
MULTILINGUAL = [
    "Ｆｕｌｌ－ｗｉｄｔｈ ｆｏｒｍｓ and the ﬁ ligature, ① ② ③",
    "Café, naïve, São Paulo, Kraków, Ærø and Þórr",
    "Привет, как дела? Γειά σου κόσμε.",
    "東京タワーの近くで ラーメン を食べた",
    "ﾊﾝｶｸ katakana and\u00a0a no-break space, tab\tand   runs   of   spaces",
    "emoji 👍🏽 and a family 👨\u200d👩\u200d👧 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="rewardmodel/testdata/encoder-xlmr")
    out = ap.parse_args().out
    fast = roberta_style_fast(tokenizer_file=TOKENIZER)

    torch.manual_seed(SEED)
    cfg = XLMRobertaConfig(vocab_size=len(fast), type_vocab_size=1, **TINY)
    cfg._attn_implementation = "eager"
    model = XLMRobertaModel(cfg, add_pooling_layer=False).eval()
    redraw_norms(model)
    rows, worst = reference_rows(model, fast, texts() + MULTILINGUAL)
    write_fixture(out, model, fast, SEED, rows, worst)
    (Path(out) / "tokenizer.json").unlink()


if __name__ == "__main__":
    main()

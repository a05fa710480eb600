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

import argparse

from encoder_fixture import SRC, TINY, redraw_norms, reference_rows, roberta_style_fast, texts, write_fixture  # first: it keeps transformers offline

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import RobertaConfig, RobertaModel

SEED = 20261216
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="rewardmodel/testdata/encoder-roberta")
    out = ap.parse_args().out
    vocab_words = (SRC / "vocab.txt").read_text().split()

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts() + [" ".join(vocab_words)], trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    fast = roberta_style_fast(tokenizer_object=tok)

    torch.manual_seed(SEED)
    cfg = RobertaConfig(vocab_size=tok.get_vocab_size(), type_vocab_size=1, **TINY)
    cfg._attn_implementation = "eager"
    model = RobertaModel(cfg, add_pooling_layer=False).eval()
    redraw_norms(model)
    rows, worst = reference_rows(model, fast, texts())
    write_fixture(out, model, fast, SEED, rows, worst)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Train the same byte-level BPE as tagpr's tokenize.Train with Hugging Face
`tokenizers` (pip install tokenizers) and save its tokenizer.json.

    python3 hf_train.py CORPUS.json VOCAB_SIZE OUT.json SPECIAL...

CORPUS.json is {"docs": [...]} as written by `go run ./tokenize/internal/record
-corpus-out`. The result is committed as tokenize/testdata/trained/hf_tokenizer.json;
TestTrainMatchesHuggingFace compares tagpr's vocabulary and merges with it.
"""
import json
import sys

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

QWEN2 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def main():
    corpus_path, vocab_size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    specials = sys.argv[4:]
    docs = json.load(open(corpus_path, encoding="utf-8"))["docs"]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=0,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(docs, trainer)
    tok.save(out)
    import tokenizers
    print(f"tokenizers {tokenizers.__version__}: {tok.get_vocab_size()} tokens -> {out}")


if __name__ == "__main__":
    main()

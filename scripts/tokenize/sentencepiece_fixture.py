#!/usr/bin/env python3
"""Build the sentencepiece-style tokenizer fixtures under tokenize/testdata/sentencepiece/.

Llama 2, Mistral v0.1-v0.3 and TinyLlama ship sentencepiece BPE models (character-level merges over "▁"-joined
text, byte fallback to <0xNN> tokens) that transformers converts to tokenizer.json with its LlamaConverter. No
hub download is possible here, so this trains a small sentencepiece BPE model the way Llama 2's was set up (byte
fallback, digits split, whitespace-only pieces allowed, identity normalisation, unk/bos/eos = 0/1/2) on the
trainer corpus tagpr's tokenizer tests use, and converts it as transformers' LlamaConverter did (4.x; its
merges from transformers' generate_merges, ordered by the merged piece's score), in three shapes:

  legacy/     legacy=True (Llama 2, Mistral v0.1): normalizer Prepend("▁") + Replace(" ", "▁"), no
              pre_tokenizer; decoder Replace + ByteFallback + Fuse + Strip.
  metaspace/  legacy=False: a Metaspace pre_tokenizer (prepend_scheme "first", split false), no normalizer.
  nofallback/ legacy/ with byte_fallback false (unknown characters fuse into <unk>).
  unigram/    a sentencepiece Unigram model converted as transformers' XLMRobertaConverter does (XLM-R's
              shape: the Precompiled nmt_nfkc charsmap, a Metaspace pre_tokenizer, <s> … </s>).
  split/      the Metaspace pre_tokenizer as tokenizers < 0.19 wrote it (add_prefix_space true, which reads as
              prepend_scheme "always", and split true) with a Metaspace decoder.

Each gets Llama 2's TemplateProcessing post-processor (<s> before the text, as LlamaTokenizerFast sets it).

    go run ./tokenize/internal/record -corpus-out /tmp/sp/train.json
    python3 scripts/tokenize/sentencepiece_fixture.py /tmp/sp/train.json tokenize/testdata/sentencepiece

Pinned: sentencepiece 0.2.3, transformers 5.25.0, tokenizers 0.23.3 (pip install sentencepiece transformers
tokenizers protobuf). The encodings these files must give are recorded by hf_edge.py and hf_parity.py.
"""
import importlib
import json
import os
import sys
import tempfile

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from transformers.convert_slow_tokenizer import generate_merges


def train(corpus_json, tmp):
    docs = json.load(open(corpus_json, encoding="utf-8"))["docs"]
    text = os.path.join(tmp, "corpus.txt")
    with open(text, "w", encoding="utf-8") as f:
        for d in docs:
            for line in d.split("\n"):
                if line.strip():
                    f.write(line + "\n")
    prefix = os.path.join(tmp, "sp")
    spm.SentencePieceTrainer.train(
        input=text, model_prefix=prefix, model_type="bpe", vocab_size=8000, byte_fallback=True,
        split_digits=True, allow_whitespace_only_pieces=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        character_coverage=0.98, max_sentence_length=100000, minloglevel=2, num_threads=1)
    return prefix + ".model"


def convert(model_file, legacy):
    """The tokenizer.json transformers 4.x's LlamaConverter writes for model_file (its merges ordered by the
    merged piece's score, as on the hub's Llama 2 and Mistral files)."""
    proto = sentencepiece_model_pb2.ModelProto()
    with open(model_file, "rb") as f:
        proto.ParseFromString(f.read())
    scores = [(p.piece, p.score) for p in proto.pieces]
    vocab = {piece: i for i, (piece, _) in enumerate(scores)}
    merges = generate_merges(vocab, scores)
    tok = Tokenizer(BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True, dropout=None))
    tok.add_tokens([AddedToken(p.piece, normalized=False, special=True) for p in proto.pieces if p.type in (2, 3)])
    if legacy:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)])
    return tok


def train_unigram(tmp):
    """A sentencepiece Unigram model set up as XLM-R's (nmt_nfkc normalisation: its precompiled charsmap)."""
    prefix = os.path.join(tmp, "uni")
    spm.SentencePieceTrainer.train(
        input=os.path.join(tmp, "corpus.txt"), model_prefix=prefix, model_type="unigram", vocab_size=8000,
        character_coverage=0.98, max_sentence_length=100000, minloglevel=2, num_threads=1,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    return prefix + ".model"


class XLMROriginal:
    """What transformers' XLMRobertaConverter reads from a slow XLMRobertaTokenizer."""

    def __init__(self, model_file):
        self.vocab_file = model_file

    def convert_tokens_to_ids(self, token):
        return {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}[token]


def convert_unigram(model_file):
    converters = importlib.import_module("transformers.convert_slow_tokenizer")
    tok = converters.XLMRobertaConverter(XLMROriginal(model_file)).converted()
    # XLM-R's hub file lists all five special tokens; <mask> takes the space before it.
    tok.add_special_tokens([AddedToken("<pad>", normalized=False), AddedToken("<unk>", normalized=False),
                            AddedToken("<mask>", lstrip=True, normalized=False)])
    return tok


CONFIG = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
          "add_eos_token": False, "model_max_length": 4096, "tokenizer_class": "LlamaTokenizer"}


def main():
    corpus, out = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        model = train(corpus, tmp)
        shapes = {"legacy": convert(model, True), "metaspace": convert(model, False)}
        split = convert(model, False)
        split.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        split.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        shapes["split"] = split
        for name, tok in shapes.items():
            d = os.path.join(out, name)
            os.makedirs(d, exist_ok=True)
            tok.save(os.path.join(d, "tokenizer.json"))
            cfg = dict(CONFIG, legacy=name == "legacy")
            with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
                json.dump(cfg, f, indent=2)
                f.write("\n")
    with tempfile.TemporaryDirectory() as tmp:
        train(corpus, tmp)
        uni = convert_unigram(train_unigram(tmp))
        d = os.path.join(out, "unigram")
        os.makedirs(d, exist_ok=True)
        uni.save(os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                       "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>", "model_max_length": 512,
                       "tokenizer_class": "XLMRobertaTokenizer"}, f, indent=2)
            f.write("\n")
    # nofallback/ is legacy/ without byte fallback: characters the vocabulary lacks become <unk>, runs of
    # them one <unk> (fuse_unk), as in sentencepiece BPE files converted without byte_fallback.
    j = json.load(open(os.path.join(out, "legacy", "tokenizer.json"), encoding="utf-8"))
    j["model"]["byte_fallback"] = False
    os.makedirs(os.path.join(out, "nofallback"), exist_ok=True)
    with open(os.path.join(out, "nofallback", "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=2)
    # The split shape's Metaspace must read as tokenizers < 0.19 wrote it.
    path = os.path.join(out, "split", "tokenizer.json")
    j = json.load(open(path, encoding="utf-8"))
    for key in ("pre_tokenizer", "decoder"):
        j[key] = {"type": "Metaspace", "replacement": "▁", "add_prefix_space": True}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=2)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Regenerate rewardmodel/testdata/encoder/: a tiny random BERT-style text encoder exported by Optimum.

What it writes (see rewardmodel/testdata/encoder/README.md):
  model.onnx                the encoder, exported as `optimum-cli export onnx --task feature-extraction` does
                            (optimum.exporters.onnx.main_export, fp32); output `last_hidden_state`
  tokenizer.json            a WordPiece tokenizer built here (BERT normalizer and pre-tokenizer,
                            [CLS] $A [SEP]); tokenizer_config.json, special_tokens_map.json, vocab.txt beside it
  config.json               the BertConfig
  1_Pooling/config.json     sentence-transformers' pooling config (mean pooling)
  reference.json            texts, their ids from the HF tokenizer (truncated to max_length) and PyTorch's
                            pooled embeddings (mean over the attention mask, and CLS) in float32

Nothing is downloaded (HF_HUB_OFFLINE=1): the model is built from a config with a fixed seed, saved with
save_pretrained and exported from that directory. The encoder is random: it does not understand language.

Exact versions: torch 2.15.0, transformers 4.57.6, optimum 2.1.0, optimum-onnx 0.1.0, tokenizers 0.22.2,
onnx 1.23.2, onnxruntime 1.30.0, numpy 2.4.6.

Usage: /work/venv/bin/python scripts/rewardmodel/export_encoder.py [--out rewardmodel/testdata/encoder]
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, BertTokenizerFast

from optimum.exporters.onnx import main_export

SEED = 20261214
MAX_LENGTH = 48  # the truncation length the references use (PRMU's default tokens per text)
INIT_STD = 0.2  # larger than BERT's 0.02, so that texts get clearly different embeddings

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = list(".,;:!?'\"-()/+%&*=<>[]{}_#@$")
DIGITS = list("0123456789")
LETTERS = list("abcdefghijklmnopqrstuvwxyz")
# Whole words: the synthetic benchmark's words (datasets/synth.go), the LaMP profile field names, and some
# common English words. Anything else falls back to letters and ##letters, so no text is [UNK].
WORDS = """
a an the and or of in on at to for from with by about near is are was were be been it this that these
those he she they we you i my your his her their our not no yes very more most less so too again now
film films movie movies about jokes laughs pranks chases fights explosions love kisses weddings ghosts
screams monsters clues detectives secrets dragons wizards magic grief tears families robots spaceships
aliens comedy action romance horror mystery fantasy drama scifi small town city school island village
mountains battery screen price design sound camera great fine poor good bad mayor team river market
bridge festival museum storm train library garden concert park hospital farm station stadium harbor
castle opened closed changed moved won helped today yesterday week last night wow breaking update hey
look indeed folks honestly finally description tag text score title date abstract category review
user users tagged past which does give gives what write post style rating stars product
2024 2025 2026 01 02 03 04 05 06 07 08 09 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28
""".split()

TEXTS = [
    "description: a film about jokes and fights in the city; tag: comedy; date: 2024-03-05",
    "description: a film about clues and tears in a village; tag: mystery; date: 2024-03-14",
    "text: the battery is great and the screen is poor; score: 4; date: 2024-02-01",
    "text: today the mayor opened near the bridge; title: wow bridge opened mayor indeed",
    "comedy",
    "4",
    "wow mayor helped river folks",
    "",
    "Unknown Words like Zebra-Quokka, punctuation!? and CAPITALS.",
    " ".join(["the river is near the market and the museum"] * 8),  # longer than MAX_LENGTH: truncated
]


def build_vocab() -> list[str]:
    vocab, seen = [], set()
    for tok in SPECIALS + PUNCT + DIGITS + LETTERS + ["##" + c for c in LETTERS + DIGITS] + WORDS:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)
    return vocab


def build_tokenizer(vocab: list[str]) -> BertTokenizerFast:
    tk = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100))
    tk.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tk.decoder = decoders.WordPiece(prefix="##")
    return BertTokenizerFast(
        tokenizer_object=tk,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=MAX_LENGTH,
        do_lower_case=True,
    )


def build_model(vocab_size: int) -> BertModel:
    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=64,
        type_vocab_size=2,
        initializer_range=INIT_STD,
        layer_norm_eps=1e-12,
        pad_token_id=0,
    )
    torch.manual_seed(SEED)
    model = BertModel(cfg, add_pooling_layer=False)
    # Redraw LayerNorm gains and biases too (HF initializes them to 1 and 0), so no weight is trivial.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model.eval()


def pooled(model: BertModel, ids: torch.Tensor, mask: torch.Tensor):
    with torch.no_grad():
        h = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
    m = mask.unsqueeze(-1).to(h.dtype)
    # sentence-transformers' mean pooling: masked sum over max(count, 1e-9)
    mean = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return h, mean, h[:, 0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "rewardmodel/testdata/encoder"))
    args = ap.parse_args()
    out = Path(args.out)

    vocab = build_vocab()
    tok = build_tokenizer(vocab)
    model = build_model(len(vocab))

    with tempfile.TemporaryDirectory() as tmp:
        src, exp = Path(tmp) / "src", Path(tmp) / "onnx"
        model.save_pretrained(src, safe_serialization=True)
        tok.save_pretrained(src)
        main_export(str(src), output=str(exp), task="feature-extraction", library_name="transformers", dtype="fp32", do_validation=False)
        onnx_files = sorted(p.name for p in exp.glob("*.onnx*"))
        if onnx_files != ["model.onnx"]:
            raise SystemExit(f"expected one model.onnx (weights inside), got {onnx_files}")
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for name in ["model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]:
            shutil.copy(exp / name, out / name)

    m = onnx.load(out / "model.onnx")
    ins, outs = [i.name for i in m.graph.input], [o.name for o in m.graph.output]
    if "last_hidden_state" not in outs or ins[:2] != ["input_ids", "attention_mask"]:
        raise SystemExit(f"unexpected signature: inputs {ins}, outputs {outs}")

    (out / "1_Pooling").mkdir()
    pooling = {
        "word_embedding_dimension": model.config.hidden_size,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }
    (out / "1_Pooling/config.json").write_text(json.dumps(pooling, indent=2) + "\n")

    # References: each text alone (no padding), as tagpr must reproduce; the batch run below checks padding.
    rows = []
    for text in TEXTS:
        enc = tok(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        _, mean, cls = pooled(model, ids, mask)
        rows.append({"text": text, "ids": ids[0].tolist(), "mean": mean[0].tolist(), "cls": cls[0].tolist()})

    # Cross-checks before writing: padded batch == one by one; ONNX Runtime == PyTorch.
    batch = tok(TEXTS, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    _, bmean, bcls = pooled(model, batch["input_ids"], batch["attention_mask"])
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()}
    if "token_type_ids" in ins:
        feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
    oh = sess.run(["last_hidden_state"], feed)[0]
    m_np = batch["attention_mask"].numpy()[..., None].astype(np.float32)
    omean = (oh * m_np).sum(1) / np.maximum(m_np.sum(1), 1e-9)
    worst_batch = max(float(np.abs(np.array(r["mean"]) - bmean[i].numpy()).max()) for i, r in enumerate(rows))
    worst_ort = float(np.abs(omean - bmean.numpy()).max())
    worst_cls = float(np.abs(oh[:, 0] - bcls.numpy()).max())
    if max(worst_batch, worst_ort, worst_cls) > 1e-5:
        raise SystemExit(f"cross-check failed: batch {worst_batch}, ort mean {worst_ort}, ort cls {worst_cls}")

    ref = {
        "seed": SEED,
        "max_length": MAX_LENGTH,
        "hidden_size": model.config.hidden_size,
        "pooling": "mean (masked sum / max(count, 1e-9)) and cls (position 0) of last_hidden_state",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
        },
        "checks": {"padded_batch_vs_single": worst_batch, "onnxruntime_vs_torch_mean": worst_ort, "onnxruntime_vs_torch_cls": worst_cls},
        "texts": rows,
    }
    (out / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {len(vocab)} tokens, {size} bytes; checks {ref['checks']}")


if __name__ == "__main__":
    main()

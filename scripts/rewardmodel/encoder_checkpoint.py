#!/usr/bin/env python3
"""Write rewardmodel/testdata/encoder-hf/: the Optimum-exported test encoder as a transformers checkpoint.

The weights are read back out of rewardmodel/testdata/encoder/model.onnx (Optimum keeps the embeddings' and
biases' names; each projection's weight is the anonymous initializer of a MatMul whose node name carries the
module path, stored [in, out]: transposed back here), loaded into transformers' BertModel with strict names,
and saved with save_pretrained (model.safetensors, config.json). A pooler, which sentence-transformers
checkpoints carry and a feature-extraction export leaves out, is saved with it (seeded random weights), so the
importer's handling of unused tensors is tested too. The tokenizer files and 1_Pooling/config.json are copied.

The script checks that PyTorch's pooled embeddings of the saved checkpoint equal the encoder fixture's
reference.json (which PyTorch computed from the same weights before the export) and records the largest
difference in check.json: the Go test compares tagpr's import against that same reference.json.

Exact versions: torch 2.15.0, transformers 5.25.0, onnx 1.23.2, numpy 2.4.6. Nothing is downloaded.

Usage: /work/venv-trl/bin/python scripts/rewardmodel/encoder_checkpoint.py [--out rewardmodel/testdata/encoder-hf]
Running it twice gives identical files.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import torch
import transformers
from onnx import numpy_helper
from transformers import BertConfig, BertModel

SRC = Path("rewardmodel/testdata/encoder")
SEED = 20261215


def state_dict_from_onnx(path):
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    state = {}
    for name, arr in inits.items():
        if not name.startswith("onnx::"):
            state[name] = arr
    for n in m.graph.node:
        if n.op_type == "MatMul" and n.input[1] in inits and n.input[1].startswith("onnx::"):
            # "/encoder/layer.0/attention/self/query/MatMul" -> encoder.layer.0.attention.self.query.weight
            module = n.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
            state[module + ".weight"] = inits[n.input[1]].T.copy()
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


def pooled(model, ids_list):
    means, clss = [], []
    with torch.no_grad():
        for ids in ids_list:
            x = torch.tensor([ids], dtype=torch.long)
            mask = torch.ones_like(x)
            h = model(input_ids=x, attention_mask=mask, token_type_ids=torch.zeros_like(x)).last_hidden_state[0]
            means.append((h * mask[0, :, None]).sum(0) / torch.clamp(mask[0].sum(), min=1e-9))
            clss.append(h[0])
    return means, clss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="rewardmodel/testdata/encoder-hf")
    out = Path(ap.parse_args().out)
    torch.manual_seed(SEED)
    config = BertConfig.from_pretrained(str(SRC))
    model = BertModel(config, add_pooling_layer=True).eval()
    state = state_dict_from_onnx(SRC / "model.onnx")
    state["pooler.dense.weight"] = model.pooler.dense.weight.detach().clone()
    state["pooler.dense.bias"] = model.pooler.dense.bias.detach().clone()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "embeddings.position_ids"]
    if missing or unexpected:
        raise SystemExit(f"weights do not fit BertModel: missing {missing}, unexpected {unexpected}")

    ref = json.loads((SRC / "reference.json").read_text())
    texts = [t for t in ref["texts"] if t["ids"]]
    means, clss = pooled(model, [t["ids"] for t in texts])
    diff = 0.0
    for t, m, c in zip(texts, means, clss):
        diff = max(diff, float(np.abs(m.numpy() - np.array(t["mean"], dtype=np.float32)).max()),
                   float(np.abs(c.numpy() - np.array(t["cls"], dtype=np.float32)).max()))
    if diff > 1e-5:
        raise SystemExit(f"the checkpoint's embeddings differ from reference.json by {diff}")

    if out.exists():  # the folder's README.md is kept
        for f in out.iterdir():
            if f.name != "README.md":
                shutil.rmtree(f) if f.is_dir() else f.unlink()
    model.save_pretrained(str(out), safe_serialization=True)
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]:
        shutil.copy(SRC / f, out / f)
    (out / "1_Pooling").mkdir()
    shutil.copy(SRC / "1_Pooling" / "config.json", out / "1_Pooling" / "config.json")
    check = {
        "pytorch_vs_encoder_reference_max_abs": diff,
        "texts": len(texts),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
                     "numpy": np.__version__},
    }
    (out / "check.json").write_text(json.dumps(check, indent=1) + "\n")
    print(json.dumps(check))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch eager CPU peer for tagpr's training benchmark (onnx/train).

Builds the causal LM described by a Hugging Face style config.json (the one
onnx/lm writes beside a built-in model.onnx: model_type "llama" or "gpt2")
with transformers, float32, eager attention, train mode with every dropout at
0, and times on the CPU, on random token batches of a fixed shape:

  * a training step: zero_grad, forward with the causal-LM loss, backward,
    AdamW step;
  * a forward alone (the same forward and loss under torch.no_grad).

It prints one JSON object on stdout and exits 0; on any failure it writes a
message to stderr and exits nonzero (3 when torch or transformers cannot be
imported, so a caller can tell "no peer here" from "peer broken").

Nothing is fetched from a model hub. See README_torch.md beside this file.
"""

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import sys
import time

PROG = "torch_train_peer"
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NO_TORCH = 3


class PeerError(Exception):
    """A failure with a message meant for the user."""


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True,
                   help="config.json (or a folder holding one), HF style, model_type llama or gpt2")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=6, help="timed training steps (and timed forwards)")
    p.add_argument("--warmup", type=int, default=1, help="untimed training steps (and forwards) first")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--weights",
                   help="initial weights: .safetensors (HF or tagpr names, e.g. a tagpr checkpoint's "
                        "weights.safetensors) or a tagpr built-in model.onnx; default: random init")
    p.add_argument("--weights-layout", choices=["auto", "hf", "tagpr"], default="auto",
                   help="naming/orientation of --weights: hf (transformers state_dict), tagpr "
                        "(onnx/lm initializer names, linear weights stored [in, out]); auto detects")
    p.add_argument("--verify-onnx", metavar="MODEL_ONNX",
                   help="also run this model.onnx in onnxruntime and check its logits equal the torch "
                        "model's (needs the same weights, i.e. --weights)")
    p.add_argument("--verify-tol", type=float, default=1e-4,
                   help="max |logit difference| / max(1, max |logit|) for --verify-onnx")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for name in ("batch", "seq", "steps", "threads"):
        if getattr(a, name) <= 0:
            p.error(f"--{name} is {getattr(a, name)}, want > 0")
    if a.warmup < 0:
        p.error(f"--warmup is {a.warmup}, want >= 0")
    if not (a.verify_tol > 0):
        p.error(f"--verify-tol is {a.verify_tol}, want > 0")
    return a


def read_config(path):
    """Reads config.json (path may be its folder); returns (path, dict)."""
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except FileNotFoundError:
        raise PeerError(f"config {path}: no such file")
    except (OSError, UnicodeDecodeError) as e:
        raise PeerError(f"config {path}: {e}")
    except json.JSONDecodeError as e:
        raise PeerError(f"config {path}: not JSON: {e}")
    if not isinstance(d, dict):
        raise PeerError(f"config {path}: want a JSON object, got {type(d).__name__}")
    return path, d


def positive_int(path, d, *keys, required=True, default=None):
    """The first of keys present in d, checked to be a positive integer."""
    for k in keys:
        if k in d and d[k] is not None:
            v = d[k]
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise PeerError(f"config {path}: {k} is {v!r}, want a positive integer")
            return v
    if required:
        raise PeerError(f"config {path}: missing {' or '.join(keys)}")
    return default


def hf_config(path, d, seq):
    """The transformers config for d, with dropout off and eager attention.

    Sizes are read explicitly (not left to transformers' defaults, which would
    silently build a GPT-2 small or a Llama-7B when a key is missing).
    """
    import transformers

    mt = d.get("model_type")
    if mt not in ("llama", "gpt2", "qwen2"):
        raise PeerError(f"config {path}: model_type {mt!r}, want llama or gpt2 (or qwen2)")
    vocab = positive_int(path, d, "vocab_size")
    # Keys transformers would only warn about, or that tagpr adds for itself.
    extra = {k: v for k, v in d.items() if k not in ("tagpr_builtin", "transformers_version", "torch_dtype", "dtype")}
    if mt == "gpt2":
        n_embd = positive_int(path, d, "n_embd", "hidden_size")
        n_head = positive_int(path, d, "n_head", "num_attention_heads")
        n_layer = positive_int(path, d, "n_layer", "num_hidden_layers")
        n_inner = positive_int(path, d, "n_inner", "intermediate_size", required=False, default=4 * n_embd)
        n_pos = positive_int(path, d, "n_positions", "max_position_embeddings")
        if n_embd % n_head:
            raise PeerError(f"config {path}: n_embd {n_embd} is not a multiple of n_head {n_head}")
        extra.update(vocab_size=vocab, n_embd=n_embd, n_head=n_head, n_layer=n_layer, n_inner=n_inner,
                     n_positions=n_pos, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
                     use_cache=False)
        cfg = transformers.GPT2Config(**extra)
    else:
        hidden = positive_int(path, d, "hidden_size")
        heads = positive_int(path, d, "num_attention_heads")
        layers = positive_int(path, d, "num_hidden_layers")
        inter = positive_int(path, d, "intermediate_size")
        kv = positive_int(path, d, "num_key_value_heads", required=False, default=heads)
        head_dim = positive_int(path, d, "head_dim", required=False, default=None)
        n_pos = positive_int(path, d, "max_position_embeddings")
        if heads % kv:
            raise PeerError(f"config {path}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
        if head_dim is None:
            if hidden % heads:
                raise PeerError(f"config {path}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
            head_dim = hidden // heads
        extra.update(vocab_size=vocab, hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=layers,
                     intermediate_size=inter, num_key_value_heads=kv, head_dim=head_dim,
                     max_position_embeddings=n_pos, attention_dropout=0.0, use_cache=False)
        cls = transformers.LlamaConfig
        # tagpr's llama with attention_bias is the Qwen2 variant: biases on
        # q/k/v only. transformers' Llama would also put one on o_proj.
        if mt == "qwen2" or ("tagpr_builtin" in d and d.get("attention_bias")):
            cls = transformers.Qwen2Config
            extra.pop("attention_bias", None)
            extra.pop("mlp_bias", None)
            extra["model_type"] = "qwen2"
            extra["use_sliding_window"] = False
        cfg = cls(**extra)
    if seq > n_pos:
        raise PeerError(f"config {path}: --seq {seq} exceeds the model's {n_pos} positions")
    return cfg


def build_model(cfg):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    model = model.to(device="cpu", dtype=torch.float32)
    impl = getattr(model.config, "_attn_implementation", None)
    if impl != "eager":
        raise PeerError(f"transformers chose attention {impl!r}, want eager")
    return model


# ---- weights ---------------------------------------------------------------

def read_weights(path):
    """Name → float32 torch tensor from a .safetensors file or an ONNX model's initializers."""
    import torch

    if not os.path.isfile(path):
        raise PeerError(f"weights {path}: no such file")
    if path.endswith(".onnx"):
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError:
            raise PeerError(f"weights {path}: reading an ONNX model needs the onnx Python package")
        try:
            m = onnx.load(path)
        except Exception as e:  # onnx raises several unrelated types
            raise PeerError(f"weights {path}: {e}")
        out = {}
        for t in m.graph.initializer:
            if t.data_type != onnx.TensorProto.FLOAT or len(t.dims) == 0 or t.name.startswith("model.rotary."):
                continue
            out[t.name] = torch.from_numpy(numpy_helper.to_array(t).copy())
        return out
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise PeerError(f"weights {path}: reading safetensors needs the safetensors Python package")
    try:
        sd = load_file(path)
    except Exception as e:  # SafetensorError and friends
        raise PeerError(f"weights {path}: {e}")
    return {k: v.float() for k, v in sd.items() if v.is_floating_point()}


def from_tagpr(model_type, w):
    """onnx/lm names → transformers names. tagpr stores linear weights [in, out]
    (MatMul); nn.Linear wants [out, in], GPT-2's Conv1D keeps [in, out]."""
    if model_type != "gpt2":
        out = {}
        for k, v in w.items():
            if k.endswith(".weight") and v.dim() == 2 and k != "model.embed_tokens.weight":
                v = v.t().contiguous()
            out[k] = v
        return out
    out, qkv = {}, {}
    for k, v in w.items():
        if k == "model.embed_tokens.weight":
            out["transformer.wte.weight"] = v
        elif k == "model.embed_positions.weight":
            out["transformer.wpe.weight"] = v
        elif k.startswith("model.norm."):
            out["transformer.ln_f." + k[len("model.norm."):]] = v
        elif k == "lm_head.weight":
            out[k] = v.t().contiguous()
        elif k.startswith("model.layers."):
            i, rest = k[len("model.layers."):].split(".", 1)
            p = f"transformer.h.{i}."
            ren = {"input_layernorm.": "ln_1.", "post_attention_layernorm.": "ln_2.",
                   "self_attn.o_proj.": "attn.c_proj.", "mlp.fc_in.": "mlp.c_fc.", "mlp.fc_out.": "mlp.c_proj."}
            for a, b in ren.items():
                if rest.startswith(a):
                    out[p + b + rest[len(a):]] = v
                    break
            else:
                for j, proj in enumerate(("self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj.")):
                    if rest.startswith(proj):
                        qkv.setdefault((i, rest[len(proj):]), [None] * 3)[j] = v
                        break
                else:
                    out[k] = v  # unknown: reported as unexpected by load_weights
        else:
            out[k] = v
    for (i, kind), parts in qkv.items():
        name = f"transformer.h.{i}.attn.c_attn.{kind}"
        if any(t is None for t in parts):
            raise PeerError(f"weights: {name}: q/k/v projections incomplete for layer {i}")
        out[name] = torch_cat(parts, dim=-1)
    return out


def torch_cat(parts, dim):
    import torch
    return torch.cat(parts, dim=dim).contiguous()


def fits(model, w):
    """Names in w missing from the model, and shape mismatches; [] when w loads cleanly."""
    sd = model.state_dict()
    bad = []
    for k, v in w.items():
        if k not in sd:
            bad.append(f"unexpected {k}")
        elif tuple(sd[k].shape) != tuple(v.shape):
            bad.append(f"{k}: file {tuple(v.shape)}, model {tuple(sd[k].shape)}")
    return bad


def load_weights(model, path, layout):
    import torch

    raw = read_weights(path)
    if not raw:
        raise PeerError(f"weights {path}: no float tensors")
    mt = model.config.model_type
    cands = {"hf": raw, "tagpr": from_tagpr("gpt2" if mt == "gpt2" else "llama", raw)}
    problems = {k: fits(model, v) for k, v in cands.items()}
    if layout == "auto":
        ok = [k for k in ("hf", "tagpr") if not problems[k]]
        if len(ok) == 2 and any(not torch.equal(cands["hf"][k], cands["tagpr"].get(k, cands["hf"][k])) for k in raw):
            raise PeerError(f"weights {path}: fits both the hf and the tagpr layout (all linear weights square); "
                            "pass --weights-layout")
        if not ok:
            best = min(problems, key=lambda k: len(problems[k]))
            raise PeerError(f"weights {path}: does not fit the {mt} model from the config ({best} layout: "
                            + "; ".join(problems[best][:5]) + (" …" if len(problems[best]) > 5 else "") + ")")
        layout = ok[0]
    elif problems[layout]:
        raise PeerError(f"weights {path}: does not fit the {mt} model in the {layout} layout: "
                        + "; ".join(problems[layout][:5]))
    w = dict(cands[layout])
    tied = getattr(model.config, "tie_word_embeddings", False)
    if tied and "lm_head.weight" in w:
        # Loading it would overwrite the shared token embedding.
        emb = next(k for k, p in model.state_dict().items()
                   if p.data_ptr() == model.get_input_embeddings().weight.data_ptr() and k != "lm_head.weight")
        if emb in w and not torch.equal(w[emb], w["lm_head.weight"]):
            raise PeerError(f"weights {path}: holds an lm_head.weight apart from {emb}, "
                            "but the config ties them (tie_word_embeddings)")
        w.setdefault(emb, w["lm_head.weight"])
        del w["lm_head.weight"]
    missing = [k for k in model.state_dict() if k not in w]
    missing = [k for k in missing if not (tied and k == "lm_head.weight")]
    if missing:
        raise PeerError(f"weights {path}: missing {', '.join(missing[:5])}" + (" …" if len(missing) > 5 else ""))
    with torch.no_grad():
        model.load_state_dict(w, strict=False)
    if tied and model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        raise PeerError("weights: lm_head lost its tie to the token embedding")
    return layout


# ---- checks and timing -----------------------------------------------------

def verify_onnx(model, path, vocab, tol, seed):
    """Runs model.onnx (Optimum layout, empty past) in onnxruntime and compares logits."""
    import numpy as np
    import torch
    try:
        import onnxruntime as ortpy
    except ImportError:
        raise PeerError("--verify-onnx needs the onnxruntime Python package")
    try:
        sess = ortpy.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise PeerError(f"verify {path}: {e}")
    B, T = 2, 16
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, vocab, (B, T), generator=g)
    feeds = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = ids.numpy()
        elif i.name == "attention_mask":
            feeds[i.name] = np.ones((B, T), dtype=np.int64)
        elif i.name == "position_ids":
            feeds[i.name] = np.tile(np.arange(T, dtype=np.int64), (B, 1))
        elif i.name.startswith("past_key_values."):
            shape = [B if k == 0 else (0 if k == 2 else s) for k, s in enumerate(i.shape)]
            if any(not isinstance(s, int) for s in shape):
                raise PeerError(f"verify {path}: input {i.name} has symbolic shape {i.shape}")
            feeds[i.name] = np.zeros(shape, dtype=np.float32)
        else:
            raise PeerError(f"verify {path}: unexpected input {i.name}")
    try:
        ref = sess.run(["logits"], feeds)[0]
    except Exception as e:
        raise PeerError(f"verify {path}: {e}")
    was = model.training
    model.eval()
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits.numpy()
    model.train(was)
    if got.shape != ref.shape:
        raise PeerError(f"verify {path}: logits shape onnx {ref.shape}, torch {got.shape}")
    diff = float(np.max(np.abs(got - ref)))
    rel = diff / max(1.0, float(np.max(np.abs(ref))))
    if not rel <= tol:
        raise PeerError(f"verify {path}: logits differ from torch by {diff:.3g} (relative {rel:.3g} > {tol:g}); "
                        "not the same model")
    return diff


def median_ms(xs):
    return statistics.median(xs) * 1e3


def run(a):
    # Stdout carries only the final JSON: anything a library prints goes to stderr.
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        result = measure(a)
    real_stdout.write(json.dumps(result) + "\n")
    real_stdout.flush()


def measure(a):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"{PROG}: torch/transformers not available: {e}", file=sys.stderr)
        sys.exit(EXIT_NO_TORCH)

    torch.set_num_threads(a.threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel op
        torch.set_num_interop_threads(1)
    path, d = read_config(a.config)
    cfg = hf_config(path, d, a.seq)
    torch.manual_seed(a.seed)
    model = build_model(cfg)
    layout = None
    if a.weights:
        layout = load_weights(model, a.weights, a.weights_layout)
    verify = None
    if a.verify_onnx:
        if not a.weights:
            raise PeerError("--verify-onnx needs --weights (the torch model is otherwise randomly initialized)")
        verify = verify_onnx(model, a.verify_onnx, cfg.vocab_size, a.verify_tol, a.seed)

    model.train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    g = torch.Generator().manual_seed(a.seed)
    n = a.warmup + a.steps
    batches = [torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=g) for _ in range(n)]
    mask = torch.ones(a.batch, a.seq, dtype=torch.long)

    def forward(ids):
        return model(input_ids=ids, attention_mask=mask, labels=ids, use_cache=False).loss

    fwd_t, fwdbwd_t, step_t, losses = [], [], [], []
    for s, ids in enumerate(batches):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = forward(ids)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        lv = loss.item()
        if not math.isfinite(lv):
            raise PeerError(f"training step {s}: loss is {lv}")
        losses.append(lv)
        if s >= a.warmup:
            fwd_t.append(t1 - t0)
            fwdbwd_t.append(t2 - t0)
            step_t.append(t3 - t0)

    infer_t = []
    with torch.no_grad():
        for s, ids in enumerate(batches):
            t0 = time.perf_counter()
            lv = forward(ids).item()
            t1 = time.perf_counter()
            if not math.isfinite(lv):
                raise PeerError(f"forward {s}: loss is {lv}")
            if s >= a.warmup:
                infer_t.append(t1 - t0)

    step_ms, fwd_ms, fwd_bwd_ms = median_ms(step_t), median_ms(infer_t), median_ms(fwdbwd_t)
    out = {
        "tokens_per_s": a.batch * a.seq / (step_ms / 1e3),
        "step_ms": step_ms,
        "fwd_ms": fwd_ms,
        "fwd_bwd_ms": fwd_bwd_ms,
        "fwd_train_ms": median_ms(fwd_t),
        "opt_ms": median_ms([s - fb for s, fb in zip(step_t, fwdbwd_t)]),
        "fwd_bwd_over_fwd": fwd_bwd_ms / fwd_ms,
        # The fastest samples: the best estimate of an unloaded machine.
        "step_ms_min": min(step_t) * 1e3,
        "fwd_ms_min": min(infer_t) * 1e3,
        "fwd_bwd_ms_min": min(fwdbwd_t) * 1e3,
        "fwd_bwd_over_fwd_min": min(fwdbwd_t) / min(infer_t),
        "params": params,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "model_type": model.config.model_type,
        "batch": a.batch,
        "seq": a.seq,
        "steps": a.steps,
        "warmup": a.warmup,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "weights": layout or "random",
        # Every timed sample, to judge the noise of a shared machine.
        "step_ms_each": [round(t * 1e3, 3) for t in step_t],
        "fwd_ms_each": [round(t * 1e3, 3) for t in infer_t],
    }
    if verify is not None:
        out["verify_max_abs_diff"] = verify
    return out


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(a)
    except PeerError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_FAIL
    except MemoryError:
        print(f"{PROG}: out of memory at batch {a.batch} × seq {a.seq}", file=sys.stderr)
        return EXIT_FAIL
    except Exception as e:  # a library failure: say what, not a bare traceback
        print(f"{PROG}: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAIL
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""TRL 1.16's GRPOTrainer on tagpr's completions, for TestStepMatchesTRLPeer.

  trl_step_peer.py build DIR   writes DIR/hf: a tiny Llama with random weights
                               (no pad_token_id: PyTorch's padding_idx would
                               freeze one embedding row, which tagpr trains)
  trl_step_peer.py step DIR    reads DIR/cases.json (tagpr's steps: config,
                               prompts, completions), runs one TRL generation
                               round of each on the same completions through
                               GRPOTrainer's rollout_func, and writes
                               DIR/trl.json: each case's logged metrics, one
                               dict per optimizer update

The reward is the test's: Σ (id mod 5) / 4 over the completion ids. TRL
computes the rewards, advantages, reference and old log-probs, loss,
gradient and AdamW updates itself; tagpr's side only hands it the sampled
ids. The schedule is tagpr's (cosine to a tenth of the peak:
cosine_with_min_lr, min_lr_rate 0.1). Exit 3 when torch, transformers or
trl cannot be imported. Nothing is fetched from a hub.
"""

import json
import os
import sys
import tempfile

PROG = "trl_step_peer"
VOCAB = 64


def build(d):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(5)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False, rms_norm_eps=1e-6, bos_token_id=2, eos_token_id=1,
                      initializer_range=0.5)
    LlamaForCausalLM(cfg).float().save_pretrained(os.path.join(d, "hf"), safe_serialization=True)


def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    # The pad token is the EOS: TRL counts a completion that ends with the pad
    # token as terminated, tagpr (Finish) only one that ends with an EOS.
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", pad_token="t1", eos_token="t1", bos_token="t2")


def step(d, case):
    import torch
    import transformers
    import trl
    from datasets import Dataset

    cfg, rows = case["config"], case["rows"]
    prompts = list(dict.fromkeys(r["prompt"] for r in rows))
    by_prompt = {p: [r for r in rows if r["prompt"] == p] for p in prompts}

    def rollout(batch_prompts, trainer):
        taken = {p: 0 for p in prompts}
        out = {"prompt_ids": [], "completion_ids": [], "logprobs": []}
        for p in batch_prompts:
            r = by_prompt[p][taken[p]]
            taken[p] += 1
            out["prompt_ids"].append(r["prompt_ids"])
            out["completion_ids"].append(r["completion_ids"])
            out["logprobs"].append(r["logprobs"])
        return out

    def reward(completions, completion_ids, **kw):
        return [sum(i % 5 for i in ids) / 4 for ids in completion_ids]

    kept = []  # one dict per optimizer update

    class Keep(transformers.TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                kept.append(dict(logs))

    args = trl.GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-step-peer-"), use_cpu=True, bf16=False,
        per_device_train_batch_size=len(rows), num_generations=cfg["num_generations"],
        max_completion_length=cfg["max_completion_length"], beta=cfg.get("beta", 0.0),
        loss_type=cfg.get("loss_type", "dapo"), scale_rewards=cfg.get("scale_rewards", "group"),
        num_iterations=cfg.get("num_iterations", 1), learning_rate=cfg["learning_rate"],
        max_grad_norm=cfg.get("max_grad_norm", 0.0), weight_decay=cfg.get("weight_decay", 0.0),
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1},
        temperature=cfg.get("temperature", 1.0), top_k=cfg.get("top_k", 0),
        use_bias_correction_kl=cfg.get("use_bias_correction_kl", True), epsilon=cfg.get("epsilon", 0.2),
        epsilon_high=cfg.get("epsilon_high"), mask_truncated_completions=cfg.get("mask_truncated_completions", False),
        max_steps=cfg.get("num_iterations", 1), logging_steps=1, report_to="none", save_strategy="no",
        gradient_checkpointing=False, shuffle_dataset=False, seed=1, dataloader_num_workers=0,
        model_init_kwargs={"dtype": torch.float32})
    trainer = trl.GRPOTrainer(model=os.path.join(d, "hf"), reward_funcs=reward, args=args,
                              train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tokenizer(),
                              rollout_func=rollout, callbacks=[Keep()])
    trainer.train()
    return kept


def main(argv):
    if len(argv) != 2 or argv[0] not in ("build", "step"):
        print(f"usage: {PROG} build|step DIR", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import trl
    except ImportError as e:
        print(f"{PROG}: torch/transformers/trl not available: {e}", file=sys.stderr)
        return 3
    d = argv[1]
    if argv[0] == "build":
        build(d)
        return 0
    with open(os.path.join(d, "cases.json")) as f:
        cases = json.load(f)
    out = {"trl": trl.__version__, "cases": {name: step(d, c) for name, c in cases.items()}}
    with open(os.path.join(d, "trl.json"), "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

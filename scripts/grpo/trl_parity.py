"""Record TRL's GRPO loss on one batch, for tagpr's parity tests.

Runs TRL's own GRPOTrainer._compute_loss (the trainer object is made
without a model: the per-token log-probs come from a leaf logits tensor, so
gradients are taken with respect to the logits) over 126 configurations:

  108 = loss_type {grpo, dapo, dr_grpo} x beta {0, 0.04, 0.1}
        x epsilon_high {0.2, 0.28} x scale_rewards {group, batch, none}
        x {on-policy, off-policy}, with TRL's default use_bias_correction_kl=True
   18 = the same with use_bias_correction_kl=False, beta 0.04, epsilon_high 0.28

and the advantages TRL computes from the batch's rewards for each
scale_rewards (the lines of _generate_and_score_completions, repeated here
because they are not a function of their own). Everything runs in float64.

Writes
  onnx/train/testdata/trl_grpo_loss.json         configs, inputs, losses, metrics
  onnx/train/testdata/trl_grpo_loss.safetensors  gradients w.r.t. the logits, one per config
  pipeline/grpo/testdata/trl_advantages.json     rewards and advantages per scale_rewards

Run (versions recorded in the JSON; these made the committed files):
  python3 -m venv /tmp/trl && /tmp/trl/bin/pip install trl==1.16.0 torch==2.15.0 transformers==5.25.0 safetensors==0.8.0
  /tmp/trl/bin/python scripts/grpo/trl_parity.py
"""

import collections
import json
import os
import tempfile
import types

import safetensors.torch
import torch
import transformers
import trl
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import nanstd

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
B, G, P, C, V = 6, 3, 2, 4, 5  # rows, group size, prompt / completion length, vocab
T = P + C

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(20261206)
LOGITS = torch.randn(B, T, V, generator=gen) * 1.5
IDS = torch.randint(0, V, (B, T), generator=gen)
PROMPT_LEN = [2, 1, 2, 2, 1, 2]  # left-padded prompts
COMPLETION_LEN = [4, 2, 3, 4, 1, 3]  # right-padded completions
PROMPT_MASK = torch.tensor([[0] * (P - n) + [1] * n for n in PROMPT_LEN])
COMPLETION_MASK = torch.tensor([[1] * n + [0] * (C - n) for n in COMPLETION_LEN])
REWARDS = torch.tensor([1.0, 0.0, 0.5, 0.2, 0.2, 0.9])
# For the advantages alone: a third group whose rewards are all equal.
ADV_REWARDS = torch.tensor([1.0, 0.0, 0.5, 0.2, 0.2, 0.9, 0.3, 0.3, 0.3])
# Off-policy: the old (sampling) and reference log-probs differ from the current ones.
OLD_SHIFT = (torch.rand(B, C, generator=gen) - 0.5) * 1.0
REF_SHIFT = (torch.rand(B, C, generator=gen) - 0.5) * 0.8


def per_token_logps(logits):
    """What _get_per_token_logps_and_entropies returns at temperature 1."""
    lg = logits[:, :-1, :][:, -C:]
    lp = torch.log_softmax(lg, dim=-1)
    logps = lp.gather(-1, IDS[:, -C:].unsqueeze(-1)).squeeze(-1)
    entropy = -(lp.exp() * lp).sum(-1)
    return logps, entropy


def advantages(scale, rewards=REWARDS):
    """TRL 1.16 _generate_and_score_completions, sum_then_normalize, one process."""
    rewards = rewards.clone()
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, G), dim=1).repeat_interleave(G, dim=0)
    if scale in ["group", "none"]:
        std_rewards = nanstd(rewards.view(-1, G), dim=1).repeat_interleave(G, dim=0)
    else:
        std_rewards = nanstd(rewards).expand_as(rewards)
    adv = rewards - mean_grouped_rewards
    if scale != "none":
        adv = adv / (std_rewards + 1e-4)
    zero = torch.isclose(std_rewards, torch.zeros_like(std_rewards)).float().mean().item()
    return torch.nan_to_num(adv, nan=0.0), zero


class Accelerator:
    """The one-process accelerator _compute_loss talks to."""
    num_processes = 1

    def reduce(self, x, reduction="sum"):
        return x

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x


def trainer(args):
    t = GRPOTrainer.__new__(GRPOTrainer)  # no model, no dataset: only _compute_loss runs
    t.args = args
    t.beta = args.beta
    t.loss_type = args.loss_type
    t.epsilon_low = args.epsilon
    t.epsilon_high = args.epsilon_high
    t.scale_rewards = args.scale_rewards
    t.max_completion_length = args.max_completion_length
    t.importance_sampling_level = args.importance_sampling_level
    t.top_entropy_quantile = args.top_entropy_quantile
    t.off_policy_mask_threshold = args.off_policy_mask_threshold
    t.use_vllm = False
    t.vllm_importance_sampling_correction = False
    t.aux_loss_enabled = False
    t._entropy_bonus_enabled = False
    t.current_gradient_accumulation_steps = 1
    t.accelerator = Accelerator()
    t.model = types.SimpleNamespace(training=True)
    t._metrics = {"train": collections.defaultdict(list), "eval": collections.defaultdict(list)}
    return t


def run(cfg, out_dir):
    args = GRPOConfig(output_dir=out_dir, report_to=[], num_generations=G, per_device_train_batch_size=B,
                      max_completion_length=C, beta=cfg["beta"], epsilon=0.2, epsilon_high=cfg["epsilon_high"],
                      loss_type=cfg["loss_type"], scale_rewards=cfg["scale_rewards"],
                      use_bias_correction_kl=cfg["use_bias_correction_kl"], use_cpu=True)
    t = trainer(args)
    logits = LOGITS.clone().requires_grad_(True)
    logps, entropy = per_token_logps(logits)
    t._get_per_token_logps_and_entropies = lambda *a, **k: (logps, entropy, None)
    adv, _ = advantages(cfg["scale_rewards"])
    cur = logps.detach()
    inputs = {
        "prompt_ids": IDS[:, :P], "prompt_mask": PROMPT_MASK,
        "completion_ids": IDS[:, P:], "completion_mask": COMPLETION_MASK,
        "advantages": adv, "num_items_in_batch": COMPLETION_MASK.sum(),
    }
    if cfg["off_policy"]:
        inputs["old_per_token_logps"] = cur + OLD_SHIFT
    if cfg["beta"] != 0:
        inputs["ref_per_token_logps"] = cur + REF_SHIFT
    loss = t._compute_loss(None, inputs)
    loss.backward()
    m = t._metrics["train"]
    metrics = {k: m[k][0] for k in ["clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "kl"] if k in m}
    return loss.item(), metrics, logits.grad.clone()


def main():
    configs = []
    for lt in ["grpo", "dapo", "dr_grpo"]:
        for beta in [0.0, 0.04, 0.1]:
            for eh in [0.2, 0.28]:
                for scale in ["group", "batch", "none"]:
                    for off in [False, True]:
                        configs.append(dict(loss_type=lt, beta=beta, epsilon_high=eh, scale_rewards=scale,
                                            off_policy=off, use_bias_correction_kl=True))
    for lt in ["grpo", "dapo", "dr_grpo"]:
        for scale in ["group", "batch", "none"]:
            for off in [False, True]:
                configs.append(dict(loss_type=lt, beta=0.04, epsilon_high=0.28, scale_rewards=scale,
                                    off_policy=off, use_bias_correction_kl=False))
    grads, records = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for i, cfg in enumerate(configs):
            loss, metrics, grad = run(cfg, tmp)
            name = "%03d" % i
            grads[name] = grad.contiguous()
            records.append(dict(cfg, name=name, loss=loss, metrics=metrics))
    versions = {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__}
    # The inputs every configuration shares: off-policy runs add OLD_SHIFT to
    # the current log-probs for the old ones, beta > 0 adds REF_SHIFT for the
    # reference ones; advantages depend on scale_rewards only.
    logps, _ = per_token_logps(LOGITS)
    doc = dict(versions=versions, B=B, G=G, P=P, C=C, V=V, epsilon=0.2,
               logits=LOGITS.tolist(), input_ids=IDS.tolist(), prompt_mask=PROMPT_MASK.tolist(),
               completion_mask=COMPLETION_MASK.tolist(), current_logprobs=logps.tolist(),
               old_shift=OLD_SHIFT.tolist(), ref_shift=REF_SHIFT.tolist(),
               advantages={s: advantages(s)[0].tolist() for s in ["group", "batch", "none"]}, configs=records)
    out = os.path.join(ROOT, "onnx", "train", "testdata")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "trl_grpo_loss.json"), "w") as f:
        f.write(json.dumps({k: v for k, v in doc.items() if k != "configs"})[:-1] + ', "configs": [\n')
        f.write(",\n".join(json.dumps(r) for r in records) + "\n]}\n")
    safetensors.torch.save_file(grads, os.path.join(out, "trl_grpo_loss.safetensors"), metadata=versions)

    adv = {}
    for scale in ["group", "batch", "none"]:
        a, zero = advantages(scale, ADV_REWARDS)
        adv[scale] = dict(advantages=a.tolist(), frac_reward_zero_std=zero)
    out = os.path.join(ROOT, "pipeline", "grpo", "testdata")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "trl_advantages.json"), "w") as f:
        json.dump(dict(versions=versions, G=G, rewards=ADV_REWARDS.tolist(), scales=adv), f, indent=1)
        f.write("\n")
    print("wrote %d configurations (TRL %s, torch %s)" % (len(configs), trl.__version__, torch.__version__))


if __name__ == "__main__":
    main()

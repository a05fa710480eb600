"""Reads a tagpr run folder's TensorBoard event files back with TensorBoard's
own reader (event_accumulator), the way `tensorboard --logdir OUT` does, and
checks every scalar against the run's record: the stage's JSONL step log
(STAGE/checkpoints/train_log.jsonl or rl_log.jsonl). For each run it prints
the scalar tags with their step count, steps, first/last values and how many
points match the log. Exits non-zero if no run or no scalar is found, if a
run's steps are not strictly increasing after TensorBoard's purge of
restarted steps, if a value is not finite, or if any point differs from its
log line (beyond float32 rounding) or has no log line. A stage that keeps no
step log (PRMU training without checkpoints) is read but not compared.

    /work/venv/bin/pip install tensorboard   # tested with tensorboard 2.21.0
    python scripts/report/read_tfevents.py out/demo [--expect sft,rl/guided,rl/exploratory]

Not part of CI: Go never runs Python; this checks the Go writer against the
reference reader by hand (the Go tests read the files back with the Go reader).
"""
import argparse
import json
import math
import os
import sys

from tensorboard.backend.event_processing import event_accumulator

# Scalar tags (TRL's names, as the stages report them) whose JSONL key differs;
# every other tag is its own key, "a/b/c" meaning nested keys a.b.c where the
# flat key is absent.
LOG_KEYS = {
    "learning_rate": "lr",
    "reward": "reward.mean",
    "reward_std": "reward.std",
    "completions/mean_length": "completion_length.mean",
    "completions/min_length": "completion_length.min",
    "completions/max_length": "completion_length.max",
    "completions/clipped_ratio": "truncated_fraction",
}


def runs(logdir):
    """Folders below logdir holding event files, as TensorBoard names runs."""
    for root, _dirs, files in os.walk(logdir):
        if any("tfevents" in f for f in files):
            yield os.path.relpath(root, logdir)


def read_log(run_dir):
    """The stage's step log by step (the last line of a step wins), or None."""
    for name in ("rl_log.jsonl", "train_log.jsonl"):
        path = os.path.join(run_dir, "checkpoints", name)
        if os.path.exists(path):
            with open(path) as f:
                lines = [json.loads(l) for l in f if l.strip()]
            return path, {l["step"]: l for l in lines}
    return None, None


def log_value(line, tag):
    """The value a log line holds for a scalar tag, or None."""
    key = LOG_KEYS.get(tag)
    parts = tag.split("/")
    if key is None and len(parts) == 3 and parts[0] == "rewards" and parts[2] in ("share", "signal"):
        key = "reward_contributions." + parts[1] + "." + parts[2]  # a weighted reward's Contribution
    if key is None:
        if tag in line:
            return line[tag]
        key = tag.replace("/", ".")
    v = line
    for k in key.split("."):
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v if isinstance(v, (int, float)) else None


def close(a, b):
    # Event files hold float32: allow its rounding (2^-24 relative).
    return math.isclose(a, b, rel_tol=1e-6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("logdir")
    ap.add_argument("--expect", default="", help="comma-separated runs that must be present")
    args = ap.parse_args()
    found = sorted(runs(args.logdir))
    if not found:
        sys.exit(f"no event files below {args.logdir}")
    ok = True
    for run in found:
        run_dir = os.path.join(args.logdir, run)
        acc = event_accumulator.EventAccumulator(
            run_dir, size_guidance={event_accumulator.SCALARS: 0}, purge_orphaned_data=True)
        acc.Reload()
        tags = acc.Tags()["scalars"]
        log_path, log = read_log(run_dir)
        print(f"run {run}: {len(tags)} scalar tags; record {os.path.relpath(log_path, args.logdir) if log_path else 'none'}"
              + (f" ({len(log)} steps)" if log else ""))
        if not tags:
            ok = False
        checked = 0
        for tag in sorted(tags):
            ev = acc.Scalars(tag)
            steps = [e.step for e in ev]
            if any(b <= a for a, b in zip(steps, steps[1:])):
                print(f"  {tag}: steps not increasing: {steps}")
                ok = False
            if any(not math.isfinite(e.value) for e in ev):
                print(f"  {tag}: a non-finite value")
                ok = False
            match, bad = 0, []
            for e in ev if log is not None else []:
                want = log_value(log.get(e.step, {}), tag) if log else None
                if want is not None and close(e.value, float(want)):
                    match += 1
                else:
                    bad.append((e.step, e.value, want))
            checked += match
            if bad:
                ok = False
                print(f"  {tag}: {len(bad)} points differ from the log, first (step, event, log): {bad[0]}")
            print(f"  {tag}: {len(ev)} points, steps {steps[0]}..{steps[-1]}, first {ev[0].value:.6g}, "
                  f"last {ev[-1].value:.6g}" + (f", {match}/{len(ev)} equal to the log" if log is not None else ""))
        if log is not None:
            # Every logged step that the stage reported is in the event files.
            step_tags = {e.step for e in acc.Scalars(tags[0])} if tags else set()
            missing = [s for s, l in log.items() if not l.get("skipped") and s not in step_tags]
            if missing:
                ok = False
                print(f"  steps of the log missing from the event files: {missing[:10]}")
        print(f"  {checked} points checked against the log" if log is not None else
              "  no JSONL log to check against (a stage that keeps no checkpoints, as PRMU training, keeps none)")
    for want in filter(None, args.expect.split(",")):
        if want not in found:
            print(f"missing run {want} (found {found})")
            ok = False
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

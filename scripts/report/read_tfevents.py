"""Reads a tagpr run folder's TensorBoard event files back with TensorBoard's
own reader (event_accumulator), the way `tensorboard --logdir OUT` does, and
prints each run's scalar tags with their step count, steps and first/last
values. Exits non-zero if no run or no scalar is found, or if a run's steps
are not strictly increasing after TensorBoard's purge of restarted steps.

    /work/venv/bin/pip install tensorboard   # tested with tensorboard 2.21.0
    python scripts/report/read_tfevents.py out/demo [--expect sft,rl/guided,rl/exploratory]

Not part of CI: Go never runs Python; this checks the Go writer against the
reference reader by hand (the Go tests read the files back with the Go reader).
"""
import argparse
import os
import sys

from tensorboard.backend.event_processing import event_accumulator


def runs(logdir):
    """Folders below logdir holding event files, as TensorBoard names runs."""
    for root, _dirs, files in os.walk(logdir):
        if any("tfevents" in f for f in files):
            yield os.path.relpath(root, logdir)


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
        acc = event_accumulator.EventAccumulator(
            os.path.join(args.logdir, run), size_guidance={event_accumulator.SCALARS: 0}, purge_orphaned_data=True)
        acc.Reload()
        tags = acc.Tags()["scalars"]
        print(f"run {run}: {len(tags)} scalar tags")
        if not tags:
            ok = False
        for tag in sorted(tags):
            ev = acc.Scalars(tag)
            steps = [e.step for e in ev]
            if any(b <= a for a, b in zip(steps, steps[1:])):
                print(f"  {tag}: steps not increasing: {steps}")
                ok = False
            print(f"  {tag}: {len(ev)} points, steps {steps[0]}..{steps[-1]}, first {ev[0].value:.6g}, last {ev[-1].value:.6g}")
    for want in filter(None, args.expect.split(",")):
        if want not in found:
            print(f"missing run {want} (found {found})")
            ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes small files in the shapes other tools give tagpr, under datasets/testdata/variants/, for Go tests.

Not run by CI (CI has no Python packages). Run by hand from the repository root:

    pip install pyarrow pandas
    python3 scripts/datasets/make_variant_fixtures.py

Files (each a few KB):
  nulls_chains.parquet       tagged_chain, one row per row group; record 2's prompt[1].content is null
  nulls_rollouts.arrow       rollout (IPC stream); record 1's reward is null
  nulls_predictions.feather  prediction (IPC file); record 1's model is null
"""
import copy, os, sys

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(__file__))
from crosscheck import SCHEMAS, samples  # noqa: E402

OUT = "datasets/testdata/variants"


def main():
    os.makedirs(OUT, exist_ok=True)
    s = samples()
    # Nulls where tagpr's schemas require a value (pyarrow's schema fields are nullable, so it writes them).
    chains = s["chains"] + [copy.deepcopy(s["chains"][0])]
    chains[2]["id"] = "c"
    chains[2]["prompt"][1]["content"] = None
    pq.write_table(pa.Table.from_pylist(chains, schema=SCHEMAS["chains"]), f"{OUT}/nulls_chains.parquet", row_group_size=1)
    rolls = copy.deepcopy(s["rollouts"])
    rolls[1]["reward"] = None
    tbl = pa.Table.from_pylist(rolls, schema=SCHEMAS["rollouts"])
    with ipc.new_stream(f"{OUT}/nulls_rollouts.arrow", tbl.schema) as w:
        w.write_table(tbl)
    preds = copy.deepcopy(s["predictions"])
    preds[1]["model"] = None
    feather.write_feather(pa.Table.from_pylist(preds, schema=SCHEMAS["predictions"]), f"{OUT}/nulls_predictions.feather")
    print(f"wrote fixtures under {OUT}")


if __name__ == "__main__":
    main()

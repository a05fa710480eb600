#!/usr/bin/env python3
"""Writes small files in the shapes other tools give tagpr, under datasets/testdata/variants/, for Go tests.

Not run by CI (CI has no Python packages). Run by hand from the repository root:

    pip install pyarrow pandas
    python3 scripts/datasets/make_variant_fixtures.py

Files (each a few KB):
  nulls_chains.parquet       tagged_chain, one row per row group; record 2's prompt[1].content is null
  nulls_rollouts.arrow       rollout (IPC stream); record 1's reward is null
  nulls_predictions.feather  prediction (IPC file); record 1's model is null
  null_items_chains.arrow    tagged_chain (IPC stream); record 0's prompt[1] is a null item
  null_items_rollouts.arrow  rollout (IPC stream); record 0's token_ids[1] is null
  text_string_view.arrow     a text set as Polars writes IPC: the text column is string_view (IPC file)
  text_category.parquet      a text set from pandas: prompt and completion as category columns
                             (dictionary-encoded; record 2 repeats record 0's values)
  ids_null_item.arrow        input_ids (list<int64>, IPC stream) whose record 1 holds a null id
  enc_chains.parquet         crosscheck.py's sample chains, every string large_string and every list
                             large_list (as pandas 3 / Polars give them), one row per row group
  enc_predictions.arrow      the sample predictions with dictionary-encoded string columns (IPC stream)
  enc_rollouts.feather       the sample rollouts with string_view strings and large_list lists (IPC file)
  hf_predictions.parquet     the sample predictions through Hugging Face datasets (Dataset.to_parquet): no
                             tagpr metadata
  pandas_index_predictions.parquet  the sample predictions from a pandas frame indexed [7, 3], written with the tagpr
                             metadata put back, its index as a __index_level_0__ column
  pandas_user_LaMP_3.parquet crosscheck.py's LaMP_3 user-split rows through a pandas frame, written with the
                             tagpr metadata put back: strings large_string, the all-None date, user and chain
                             columns typed null
  hf_chains.parquet          the sample chains through Hugging Face datasets (Dataset.to_parquet): no tagpr metadata
  chains_extra_col.arrow     the sample chains with their metadata and an extra "note" column (IPC stream)
  hf_save_to_disk/           Dataset.save_to_disk of 4 texts in 2 shards (data-0000i-of-00002.arrow, state.json)
  hf_save_to_disk_1/         the same in one shard
  text_feather_v1.feather    a text set in Feather v1 (pyarrow write_feather(version=1)): refused, saying how to
                             rewrite it

Also needs `pip install datasets` (no hub access: local files only). Last written with pyarrow 26.0.1,
pandas 3.1.1 and datasets 5.2.0; rerunning it rewrites the same bytes.
"""
import copy, os, shutil, sys

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(__file__))
from crosscheck import SCHEMAS, example_schema, lamp_rows, samples  # noqa: E402

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
    # Null list items: IPC keeps a null struct item's field values, so only the item is null.
    chains = copy.deepcopy(s["chains"])
    chains[0]["prompt"][1] = None
    tbl = pa.Table.from_pylist(chains, schema=SCHEMAS["chains"])
    with ipc.new_stream(f"{OUT}/null_items_chains.arrow", tbl.schema) as w:
        w.write_table(tbl)
    rolls = copy.deepcopy(s["rollouts"])
    rolls[0]["token_ids"][1] = None
    tbl = pa.Table.from_pylist(rolls, schema=SCHEMAS["rollouts"])
    with ipc.new_stream(f"{OUT}/null_items_rollouts.arrow", tbl.schema) as w:
        w.write_table(tbl)
    # Text sets (tagpr train lm --data): the types Polars and pandas give strings, text not ASCII.
    texts = ["caf\u00e9 \U0001F389 \u65e5\u672c", "nul\x00inside", "caf\u00e9 \U0001F389 \u65e5\u672c", ""]
    feather.write_feather(pa.table({"text": pa.array(texts, pa.string_view())}), f"{OUT}/text_string_view.arrow",
                          compression="uncompressed")
    pd.DataFrame({"prompt": pd.Categorical(["q1", "q2", "q1", "q3"]), "completion": pd.Categorical(texts)}).to_parquet(
        f"{OUT}/text_category.parquet")
    tbl = pa.table({"input_ids": pa.array([[1, 2], [3, None, 5]], pa.list_(pa.int64()))})
    with ipc.new_stream(f"{OUT}/ids_null_item.arrow", tbl.schema) as w:
        w.write_table(tbl)
    # tagpr's schemas (metadata kept) in the other encodings of their types.
    def recast(schema, string, lists):
        def t(ty):
            if ty == pa.string():
                return string
            if pa.types.is_list(ty):
                return lists(pa.field(ty.value_field.name, t(ty.value_type), ty.value_field.nullable))
            if pa.types.is_struct(ty):
                return pa.struct([pa.field(f.name, t(f.type), f.nullable) for f in ty])
            return ty
        return pa.schema([pa.field(f.name, t(f.type), f.nullable) for f in schema], metadata=schema.metadata)
    tbl = pa.Table.from_pylist(s["chains"], schema=SCHEMAS["chains"])
    pq.write_table(tbl.cast(recast(tbl.schema, pa.large_string(), pa.large_list)), f"{OUT}/enc_chains.parquet", row_group_size=1)
    tbl = pa.Table.from_pylist(s["predictions"], schema=SCHEMAS["predictions"])
    cols = [c.dictionary_encode() if c.type == pa.string() else c for c in tbl.columns]
    tbl = pa.Table.from_arrays(cols, schema=pa.schema([pa.field(f.name, c.type) for f, c in zip(tbl.schema, cols)], metadata=tbl.schema.metadata))
    with ipc.new_stream(f"{OUT}/enc_predictions.arrow", tbl.schema) as w:
        w.write_table(tbl)
    tbl = pa.Table.from_pylist(s["rollouts"], schema=SCHEMAS["rollouts"])
    feather.write_feather(tbl.cast(recast(tbl.schema, pa.string_view(), pa.large_list)), f"{OUT}/enc_rollouts.feather", compression="uncompressed")
    # LaMP examples edited in pandas: None-only columns come back typed null.
    df = pd.DataFrame(pa.Table.from_pylist(lamp_rows("LaMP_3", "user"), schema=example_schema("LaMP_3")).to_pylist())
    tbl = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(tbl.replace_schema_metadata({**tbl.schema.metadata, **example_schema("LaMP_3").metadata}),
                   f"{OUT}/pandas_user_LaMP_3.parquet")
    # Tables that went through other tools: refused, saying what to do.
    from datasets import Dataset
    Dataset.from_list(s["predictions"]).to_parquet(f"{OUT}/hf_predictions.parquet")
    Dataset.from_list(s["chains"]).to_parquet(f"{OUT}/hf_chains.parquet")
    tbl = pa.Table.from_pylist(s["chains"], schema=SCHEMAS["chains"])
    tbl = tbl.append_column("note", pa.array(["n"] * tbl.num_rows)).replace_schema_metadata(SCHEMAS["chains"].metadata)
    with ipc.new_stream(f"{OUT}/chains_extra_col.arrow", tbl.schema) as w:
        w.write_table(tbl)
    df = pa.Table.from_pylist(s["predictions"], schema=SCHEMAS["predictions"]).to_pandas()
    df.index = [7, 3]  # as rows filtered out of a longer frame leave it: not a range, so written as a column
    tbl = pa.Table.from_pandas(df)
    pq.write_table(tbl.replace_schema_metadata({**tbl.schema.metadata, **SCHEMAS["predictions"].metadata}),
                   f"{OUT}/pandas_index_predictions.parquet")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        feather.write_feather(pa.table({"text": ["a", "b"]}), f"{OUT}/text_feather_v1.feather", version=1)
    for name, shards in (("hf_save_to_disk", 2), ("hf_save_to_disk_1", 1)):
        shutil.rmtree(f"{OUT}/{name}", ignore_errors=True)
        Dataset.from_dict({"text": ["a b", "c d", "e f", "g h"]}).save_to_disk(f"{OUT}/{name}", num_shards=shards)
    print(f"wrote fixtures under {OUT}")


if __name__ == "__main__":
    main()

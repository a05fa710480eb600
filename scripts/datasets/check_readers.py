#!/usr/bin/env python3
"""Checks that the tables of a tagpr run open in pyarrow, DuckDB and Hugging Face `datasets` as they are.

Reads every .parquet (chains, rollouts, predictions, data) and .arrow file (Arrow IPC stream) under a run
folder: pyarrow (parquet.read_table / ipc.open_stream), DuckDB (read_parquet; it has no built-in Arrow IPC
reader, so .arrow files go through pyarrow there) and datasets (Dataset.from_parquet / Dataset.from_file),
and compares the row counts. Not part of CI (it needs Python); run it by hand:

    tagpr demo --fast-dev-run --dir /tmp/tagpr-check
    tagpr data merge --out /tmp/tagpr-check/fast_dev_run/chains/all.arrow /tmp/tagpr-check/fast_dev_run/chains/*.parquet
    python scripts/datasets/check_readers.py /tmp/tagpr-check/fast_dev_run

Versions it was last run with: pyarrow 26.0.1, duckdb 2.0.1, datasets 5.2.0.
"""
import glob
import os
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset


def main(run):
    parquet = sorted(glob.glob(os.path.join(run, "**", "*.parquet"), recursive=True))
    arrow = sorted(glob.glob(os.path.join(run, "**", "*.arrow"), recursive=True))
    if not parquet:
        sys.exit(f"no .parquet files under {run}")
    bad = 0
    for path in parquet:
        n_pa = pq.read_table(path).num_rows
        n_duck = duckdb.sql(f"select count(*) from read_parquet('{path}')").fetchall()[0][0]
        n_hf = Dataset.from_parquet(path, cache_dir=os.path.join(run, ".hf_cache")).num_rows
        ok = n_pa == n_duck == n_hf
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {os.path.relpath(path, run)}: pyarrow {n_pa}, duckdb {n_duck}, datasets {n_hf} rows")
    for path in arrow:
        with pa.OSFile(path, "rb") as f:
            n_pa = pa.ipc.open_stream(f).read_all().num_rows
        n_hf = Dataset.from_file(path).num_rows
        tbl = pa.ipc.open_stream(path).read_all()  # DuckDB reads Arrow through pyarrow
        n_duck = duckdb.sql("select count(*) from tbl").fetchall()[0][0]
        ok = n_pa == n_hf == n_duck
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {os.path.relpath(path, run)}: pyarrow stream {n_pa}, datasets.from_file {n_hf}, duckdb (via pyarrow) {n_duck} rows")
    print(f"{len(parquet)} Parquet and {len(arrow)} Arrow stream files, {bad} bad")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/demo")

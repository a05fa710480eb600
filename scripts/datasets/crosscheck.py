#!/usr/bin/env python3
"""Cross-checks tagpr's Arrow files against pyarrow and Hugging Face `datasets`.

Not run by CI (CI has no Python packages). Run by hand from the repository root:

    pip install pyarrow datasets rank_bm25
    python3 scripts/datasets/crosscheck.py            # check only
    python3 scripts/datasets/crosscheck.py --write-fixtures   # also rewrite the committed fixtures

1. Files tagpr writes (LaMP imports in IPC and Parquet, the synthetic benchmark,
   chains/rollouts/predictions) are read by pyarrow and by HF `datasets`, and their
   contents match the JSON they came from.
2. With --write-fixtures, pyarrow writes small files in tagpr's schemas under
   datasets/testdata/pyarrow/ (IPC file, IPC stream, Parquet) that Go tests read,
   and rank_bm25 (LaMP's retriever) writes BM25 reference scores to
   datasets/testdata/bm25_reference.json.
"""
import argparse, json, os, subprocess, sys, tempfile

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

FIELDS = {
    "LaMP_1": ["title", "abstract"], "LaMP_2M": ["description", "tag"], "LaMP_2N": ["category", "text", "title"],
    "LaMP_3": ["text", "score"], "LaMP_4": ["title", "text"], "LaMP_5": ["title", "abstract"],
    "LaMP_6": ["text", "title"], "LaMP_7": ["text"],
}
FIX = "datasets/testdata"
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL", msg)


def read_any(path):
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"ARROW1":
        return ipc.open_file(path).read_all()
    if head[:4] == b"PAR1":
        return pq.read_table(path)
    return ipc.open_stream(path).read_all()


def text(v):
    return v if isinstance(v, str) else json.dumps(v)


def expected_rows(qpath, opath):
    qs = json.load(open(qpath, encoding="utf-8"))
    golds = {str(g["id"]): g["output"] for g in json.load(open(opath, encoding="utf-8"))["golds"]}
    return qs, golds


def check_lamp_table(tbl, task, qs, golds, label):
    md = tbl.schema.metadata or {}
    check(md.get(b"tagpr.schema") == b"lamp_example", f"{label}: schema kind {md.get(b'tagpr.schema')}")
    check(md.get(b"tagpr.schema_version") == b"1", f"{label}: schema version")
    check(md.get(b"tagpr.lamp.task") == task.encode(), f"{label}: task metadata")
    rows = tbl.to_pylist()
    check(len(rows) == len(qs), f"{label}: {len(rows)} rows, want {len(qs)}")
    for row, q in zip(rows, qs):
        check(row["id"] == str(q["id"]) and row["input"] == q["input"], f"{label}: id/input of {q['id']}")
        check(row["output"] == golds[str(q["id"])], f"{label}: output of {q['id']}")
        check(len(row["profile"]) == len(q["profile"]), f"{label}: profile length of {q['id']}")
        for got, want in zip(row["profile"], q["profile"]):
            for f in FIELDS[task]:
                check(got[f] == text(want[f]), f"{label}: profile field {f} of {q['id']}")
            check(got["date"] == want.get("date"), f"{label}: date of {q['id']}")


def hf_load(path):
    import datasets
    kind = "parquet" if path.endswith(".parquet") else "arrow"
    return datasets.load_dataset(kind, data_files=path, split="train", cache_dir=tempfile.mkdtemp())


def check_go_files(tagpr, tmp):
    n = 0
    for scheme in ("user", "time"):
        for task in sorted(os.listdir(f"{FIX}/lamp/{scheme}")):
            d = f"{FIX}/lamp/{scheme}/{task}"
            qs, golds = expected_rows(f"{d}/dev_questions.json", f"{d}/dev_outputs.json")
            for ext in (".arrow", ".parquet"):
                out = f"{tmp}/{scheme}_{task}{ext}"
                subprocess.run([tagpr, "data", "import-lamp", "--task", task, "--questions", f"{d}/dev_questions.json",
                                "--outputs", f"{d}/dev_outputs.json", "--scheme", scheme, "--out", out],
                               check=True, capture_output=True)
                check_lamp_table(read_any(out), task, qs, golds, f"pyarrow {scheme}/{task}{ext}")
                ds = hf_load(out)
                check(len(ds) == len(qs) and ds[0]["id"] == str(qs[0]["id"]) and
                      len(ds[len(qs) - 1]["profile"]) == len(qs[-1]["profile"]), f"HF datasets {scheme}/{task}{ext}")
                n += 1
    print(f"pyarrow and HF datasets read {n} LaMP imports written by tagpr")

    sdir = f"{tmp}/synth"
    subprocess.run([tagpr, "data", "synth", "--users", "50", "--out", sdir], check=True, capture_output=True)
    for task in ("synth_tag", "synth_rate", "synth_gen"):
        ex = read_any(f"{sdir}/{task}/train.arrow").to_pylist()
        ch = read_any(f"{sdir}/{task}/train_chains.arrow").to_pylist()
        check(len(ex) == len(ch) > 0, f"synth {task}: {len(ex)} examples, {len(ch)} chains")
        for e, c in zip(ex, ch):
            b = c["chain"].encode("utf-8")
            for s in c["spans"]:
                check(b[s["start"]:s["end"]].decode("utf-8") == s["text"], f"synth {task}: span offsets of {c['id']}")
            # synth_gen's teacher misses the user's closing word in a share of chains
            # (data.synth.title_closer_miss): its answer is then the gold less that word.
            answer_ok = c["answer"] == e["output"] or (task == "synth_gen" and e["output"].startswith(c["answer"] + " ")
                                                       and " " not in e["output"][len(c["answer"]) + 1:])
            check(e["chain"] == c["chain"] and answer_ok, f"synth {task}: chain of {e['id']}")
        ds = hf_load(f"{sdir}/{task}/train.arrow")
        check(len(ds) == len(ex) and ds[0]["chain"] == ex[0]["chain"], f"HF datasets synth {task}")
    print("pyarrow and HF datasets read the synthetic benchmark (examples and chains)")

    env = dict(os.environ, TAGPR_WRITE_SAMPLES=f"{tmp}/samples")
    subprocess.run(["go", "test", "./datasets/", "-run", "^TestWriteSamples$", "-count=1"], check=True, env=env, capture_output=True)
    want = samples()
    for kind in ("chains", "rollouts", "predictions"):
        for ext in (".arrow", ".parquet"):
            path = f"{tmp}/samples/{kind}{ext}"
            tbl = read_any(path)
            check(tbl.schema.metadata[b"tagpr.schema_version"] == b"1", f"{path}: version")
            got = tbl.to_pylist()
            check(normalize(got) == normalize(want[kind]), f"{path}: rows differ:\n{got}\n{want[kind]}")
            check(len(hf_load(path)) == len(want[kind]), f"HF datasets {path}")
    print("pyarrow and HF datasets read chains, rollouts and predictions written by tagpr")


def normalize(rows):
    def fix(v):
        if isinstance(v, float):
            return round(v, 5)
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v
    return fix(rows)


# The same rows as sampleChains/sampleRollouts/samplePredictions in datasets/file_test.go.
def samples():
    chain = "<think>\n<recall_history>likes \u00e9</recall_history>\n<conclude>x</conclude>\n</think>\n<answer>x</answer>"
    b = chain.encode()
    spans = []
    for tag, txt in (("recall_history", "likes \u00e9"), ("conclude", "x")):
        start = b.index(f"<{tag}>".encode()) + len(tag) + 2
        spans.append({"tag": tag, "text": txt, "start": start, "end": start + len(txt.encode())})
    return {
        "chains": [
            {"id": "a", "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "chain": chain,
             "spans": spans, "answer": "x", "gold": "x", "teacher": "gpt",
             "verdicts": [{"name": "answer", "pass": True, "detail": None}, {"name": "len", "pass": False, "detail": "too long"}],
             "keep": False},
            {"id": "b", "prompt": [], "chain": "<answer>y</answer>", "spans": [], "answer": "y", "gold": None,
             "teacher": "synth", "verdicts": [], "keep": True},
        ],
        "rollouts": [
            {"prompt_id": "p1", "group_index": 0, "completion": "c", "token_ids": [1, 2, 3], "logprobs": [-0.5, -1.0, -2.0],
             "rewards": [{"name": "task", "value": 1.0}, {"name": "tag", "value": 0.5}], "reward": 1.15, "advantage": 0.7,
             "stage": "guided", "step": 3},
            {"prompt_id": "p1", "group_index": 1, "completion": "", "token_ids": [], "logprobs": [], "rewards": [],
             "reward": 0.0, "advantage": -0.7, "stage": "guided", "step": 3},
        ],
        "predictions": [
            {"id": "100", "task": "LaMP_3", "model": "m", "completion": "<answer>4</answer>", "prediction": "4", "gold": "5",
             "metrics": [{"name": "mae", "value": 1.0}]},
            {"id": "101", "task": "LaMP_3", "model": "m", "completion": "??", "prediction": "", "gold": None, "metrics": []},
        ],
    }


S = pa.string()
NV = pa.list_(pa.struct([("name", S), ("value", pa.float64())]))


def meta(kind, **extra):
    m = {"tagpr.schema": kind, "tagpr.schema_version": "1"}
    m.update(extra)
    return m


SCHEMAS = {
    "chains": pa.schema([("id", S), ("prompt", pa.list_(pa.struct([("role", S), ("content", S)]))), ("chain", S),
                         ("spans", pa.list_(pa.struct([("tag", S), ("text", S), ("start", pa.int32()), ("end", pa.int32())]))),
                         ("answer", S), ("gold", S), ("teacher", S),
                         ("verdicts", pa.list_(pa.struct([("name", S), ("pass", pa.bool_()), ("detail", S)]))),
                         ("keep", pa.bool_())], metadata=meta("tagged_chain")),
    "rollouts": pa.schema([("prompt_id", S), ("group_index", pa.int32()), ("completion", S), ("token_ids", pa.list_(pa.int32())),
                           ("logprobs", pa.list_(pa.float32())), ("rewards", NV), ("reward", pa.float64()),
                           ("advantage", pa.float64()), ("stage", S), ("step", pa.int64())], metadata=meta("rollout")),
    "predictions": pa.schema([("id", S), ("task", S), ("model", S), ("completion", S), ("prediction", S), ("gold", S),
                              ("metrics", NV)], metadata=meta("prediction")),
}


def example_schema(task):
    item = pa.struct([("id", S)] + [(f, S) for f in FIELDS[task]] + [("date", S), ("extra", S)])
    return pa.schema([("id", S), ("task", S), ("split", S), ("scheme", S), ("input", S), ("profile", pa.list_(item)),
                      ("output", S), ("user", S), ("chain", S), ("extra", S)],
                     metadata=meta("lamp_example", **{"tagpr.lamp.task": task}))


def lamp_rows(task, scheme):
    """Converts LaMP JSON to tagpr rows the way tagpr does (non-string values kept in extra)."""
    d = f"{FIX}/lamp/{scheme}/{task}"
    qs, golds = expected_rows(f"{d}/dev_questions.json", f"{d}/dev_outputs.json")
    rows = []
    for q in qs:
        prof = []
        for p in q["profile"]:
            extra = {k: v for k, v in p.items() if (k not in FIELDS[task] + ["id", "date"]) or not isinstance(v, str)}
            item = {"id": text(p["id"]), "date": p.get("date"), "extra": json.dumps(extra) if extra else None}
            item.update({f: text(p[f]) for f in FIELDS[task]})
            prof.append(item)
        extra = {"id": q["id"]} if not isinstance(q["id"], str) else None
        rows.append({"id": text(q["id"]), "task": task, "split": "dev", "scheme": scheme, "input": q["input"], "profile": prof,
                     "output": golds[text(q["id"])], "user": None, "chain": None, "extra": json.dumps(extra) if extra else None})
    return rows


def write_fixtures():
    out = f"{FIX}/pyarrow"
    os.makedirs(out, exist_ok=True)
    for task, scheme in (("LaMP_3", "user"), ("LaMP_2M", "time")):
        tbl = pa.Table.from_pylist(lamp_rows(task, scheme), schema=example_schema(task))
        with ipc.new_file(f"{out}/{scheme}_{task}.arrow", tbl.schema) as w:
            w.write_table(tbl)
        with ipc.new_stream(f"{out}/{scheme}_{task}.stream.arrow", tbl.schema) as w:
            w.write_table(tbl, max_chunksize=2)
        pq.write_table(tbl, f"{out}/{scheme}_{task}.parquet")
    for kind, rows in samples().items():
        tbl = pa.Table.from_pylist(rows, schema=SCHEMAS[kind])
        with ipc.new_file(f"{out}/{kind}.arrow", tbl.schema) as w:
            w.write_table(tbl)
        pq.write_table(tbl, f"{out}/{kind}.parquet")
    bad = SCHEMAS["predictions"].with_metadata(meta("prediction") | {"tagpr.schema_version": "2"})
    pq.write_table(pa.Table.from_pylist(samples()["predictions"], schema=bad), f"{out}/predictions_v2.parquet")
    print(f"pyarrow wrote fixtures under {out}")

    from rank_bm25 import BM25Okapi
    cases = []
    for q, docs in (
        ("graphs spectral methods", ["spectral graph methods", "graphs and spectral methods for graphs", "queues in cafes", "a b c d e f"]),
        ("the park opened", ["the city park opened today", "the the the", "park", "closed museum", "opened the park the"]),
        ("x", ["y z", "x x x", "x"]),
    ):
        bm = BM25Okapi([d.split() for d in docs])
        cases.append({"query": q, "docs": docs, "scores": [float(s) for s in bm.get_scores(q.split())]})
    with open(f"{FIX}/bm25_reference.json", "w") as f:
        json.dump(cases, f, indent=1)
    print(f"rank_bm25 wrote {FIX}/bm25_reference.json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tagpr", default="", help="tagpr binary (default: go build one)")
    ap.add_argument("--write-fixtures", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    tmp = tempfile.mkdtemp()
    tagpr = args.tagpr or f"{tmp}/tagpr"
    if not args.tagpr:
        subprocess.run(["go", "build", "-o", tagpr, "./cmd/tagpr"], check=True)
    if args.write_fixtures:
        write_fixtures()
    check_go_files(tagpr, tmp)
    if failures:
        print(f"{len(failures)} checks FAILED")
        sys.exit(1)
    print("crosscheck passed")


if __name__ == "__main__":
    main()

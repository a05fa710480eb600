#!/usr/bin/env node
// Reference tokenizer runs for tagpr's tokenize package, on @lenml/tokenizers
// (a dependency-free port of transformers.js tokenizers), loaded from the
// single-file bundle that `tagpr setup` pins in models.lock.
//
//   node reference.js record --lib LIB.js --tokenizer T.json [--config C.json]
//        --corpus CORPUS.json --out FIXTURE.json.gz [--full-every 8] [--name NAME]
//   node reference.js bench  --lib LIB.js --tokenizer T.json [--config C.json]
//        --corpus CORPUS.json [--min-seconds 3]
//
// CORPUS.json is {"version": N, "docs": ["...", ...]}. record writes, per
// document, the sha256 of its UTF-8 text, the number of ids, the sha256 of
// the ids joined by "," and, for every k-th document, the ids themselves.
// bench prints {"bytes":..,"seconds":..,"mb_per_s":..} for single-threaded
// encoding (add_special_tokens: false, as tagpr's Encode).
"use strict";
const fs = require("fs");
const zlib = require("zlib");
const crypto = require("crypto");

function args(argv) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith("--")) out[argv[i].slice(2)] = argv[++i];
    else out._.push(argv[i]);
  }
  return out;
}

function sha256(data) {
  return crypto.createHash("sha256").update(data).digest("hex");
}

function load(a) {
  const lib = require(require("path").resolve(a.lib));
  const tokenizerJSON = JSON.parse(fs.readFileSync(a.tokenizer, "utf8"));
  const tokenizerConfig = a.config ? JSON.parse(fs.readFileSync(a.config, "utf8")) : {};
  const warn = console.warn;
  console.warn = () => {}; // "Unknown tokenizer class" for PreTrainedTokenizerFast is expected
  try {
    return lib.TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
  } finally {
    console.warn = warn;
  }
}

function main() {
  const a = args(process.argv.slice(2));
  const mode = a._[0];
  const corpus = JSON.parse(fs.readFileSync(a.corpus, "utf8"));
  const tok = load(a);
  const encode = (text) => tok.encode(text, { add_special_tokens: false });
  if (mode === "record") {
    const every = parseInt(a["full-every"] || "8", 10);
    const docs = corpus.docs.map((text, i) => {
      const ids = encode(text);
      const d = { text_sha256: sha256(Buffer.from(text, "utf8")), n: ids.length, ids_sha256: sha256(ids.join(",")) };
      if (i % every === 0) d.ids = ids;
      return d;
    });
    const fixture = {
      name: a.name || "",
      reference: "@lenml/tokenizers@3.7.2",
      tokenizer_sha256: sha256(fs.readFileSync(a.tokenizer)),
      corpus_version: corpus.version,
      docs,
    };
    fs.writeFileSync(a.out, zlib.gzipSync(JSON.stringify(fixture), { level: 9 }));
    const total = docs.reduce((s, d) => s + d.n, 0);
    console.log(`recorded ${docs.length} documents, ${total} ids -> ${a.out}`);
  } else if (mode === "bench") {
    const minSeconds = parseFloat(a["min-seconds"] || "3");
    const bytes = corpus.docs.reduce((s, d) => s + Buffer.byteLength(d, "utf8"), 0);
    for (const d of corpus.docs.slice(0, 8)) encode(d); // warm up the JIT
    let total = 0;
    const t0 = process.hrtime.bigint();
    let seconds = 0;
    do {
      for (const d of corpus.docs) encode(d);
      total += bytes;
      seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    } while (seconds < minSeconds);
    console.log(JSON.stringify({ bytes: total, seconds, mb_per_s: total / 1e6 / seconds }));
  } else if (mode === "encode") {
    for (const d of corpus.docs) console.log(JSON.stringify(encode(d)));
  } else {
    console.error("usage: reference.js record|bench|encode --lib LIB.js --tokenizer T.json [--config C.json] --corpus CORPUS.json");
    process.exit(2);
  }
}

main();

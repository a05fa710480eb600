// Greedy generation with transformers.js, timed, for onnx/lm's benchmark.
// Fully offline: the model is read from local files only.
//
//   node transformersjs-generate.mjs PEER_DIR MODELS_DIR NAME BATCH PROMPT_LEN NEW_TOKENS REPS
//
// MODELS_DIR/NAME holds config.json, generation_config.json and
// onnx/model.onnx. Prompts are token ids 1..PROMPT_LEN (the same the Go
// benchmark feeds). Prints one JSON line: the fastest repetition's prefill
// (prompt in → first token) and mean decode step times, and the generated ids
// so the caller can check both engines produced the same tokens.
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const [peerDir, modelsDir, name, batchS, promptS, newS, repsS] = process.argv.slice(2);
if (!name) {
  console.error('usage: node transformersjs-generate.mjs PEER_DIR MODELS_DIR NAME BATCH PROMPT_LEN NEW_TOKENS REPS');
  process.exit(2);
}
const entry = path.join(peerDir, 'node_modules/@huggingface/transformers/dist/transformers.node.mjs');
const { AutoModelForCausalLM, Tensor, env } = await import(pathToFileURL(entry).href);

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = modelsDir + path.sep;

const batch = Number(batchS), promptLen = Number(promptS), newTokens = Number(newS), reps = Number(repsS);
const model = await AutoModelForCausalLM.from_pretrained(name, { dtype: 'fp32', local_files_only: true });

const ids = new BigInt64Array(batch * promptLen);
for (let b = 0; b < batch; b++) for (let t = 0; t < promptLen; t++) ids[b * promptLen + t] = BigInt(t + 1);
const mask = new BigInt64Array(batch * promptLen).fill(1n);

// The streamer is called with the prompt, then once per generated step.
class Clock {
  constructor() { this.marks = []; }
  put() { this.marks.push(performance.now()); }
  end() { this.marks.push(performance.now()); }
}

let best = null;
for (let r = 0; r < reps; r++) {
  const clock = new Clock();
  const t0 = performance.now();
  const out = await model.generate({
    input_ids: new Tensor('int64', ids, [batch, promptLen]),
    attention_mask: new Tensor('int64', mask, [batch, promptLen]),
    max_new_tokens: newTokens,
    min_new_tokens: newTokens,
    do_sample: false,
    streamer: clock,
  });
  const m = clock.marks;
  // m[0]: prompt accepted; m[1]: first token; m[newTokens]: last token.
  const prefill = m[1] - t0;
  const decode = (m[newTokens] - m[1]) / (newTokens - 1);
  const res = { prefill_ms: prefill, decode_ms_per_step: decode, total_ms: performance.now() - t0 };
  if (!best || res.decode_ms_per_step < best.decode_ms_per_step) {
    best = res;
    best.ids = out.tolist().map((row) => row.slice(promptLen).map(Number));
  }
}
console.log(JSON.stringify(best));

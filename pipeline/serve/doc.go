// Package serve is tagpr's OpenAI-compatible HTTP server (`tagpr serve`)
// and text generation over a model folder (`tagpr model generate`).
//
// A Model is an onnx/lm causal LM with its tokenizer (tokenizer.json and
// tokenizer_config.json, whose chat template renders chats). A Server
// answers from one lm.Batcher, so every request shares one model in memory
// and the batcher's continuously batched decode steps:
//
//	POST /v1/chat/completions   messages → assistant message
//	POST /v1/completions        prompt (text, texts, token ids) → text
//	GET  /v1/models             the one model served
//	GET  /health                200 {"status":"ok"}; 503 while shutting down
//	GET  /metrics               Prometheus text: requests, tokens, queue, batch, latency histograms
//
// Requests take stream (server-sent events, one chunk per token), n,
// temperature, top_p, top_k, frequency_penalty, presence_penalty,
// repetition_penalty, max_tokens (max_completion_tokens), stop, seed,
// logprobs/top_logprobs and ignore_eos; parameters it does not implement
// are refused when set, never ignored. Temperature, top_p, top_k and
// repetition_penalty left out default to the model's
// generation_config.json (SamplingDefaults), else temperature 1. Chat answers that start
// with <think> (or whose template opened one) can put that part in
// reasoning_content: per request with separate_reasoning, by default with
// Options.Reasoning.
//
// Text is streamed as it becomes final: a token ending inside a UTF-8
// character waits for the rest, text that may begin a stop string waits
// until it cannot, and the answer is cut before the stop string, so the
// chunks of a stream add up to the whole answer and to what Model.Generate
// (`tagpr model generate`) returns for the same greedy request.
//
// Limits are refused in the OpenAI error shape
// ({"error":{"message","type","param","code"}}): body size 413, body not
// sent within BodyTimeout 408 (the body is read before a request takes its
// concurrency slot), prompt + completion over MaxModelLen 400
// context_length_exceeded, more than MaxConcurrent requests 429, shutting down 503, past RequestTimeout 504
// (an error event when streaming). Serve shuts down gracefully: new
// requests are refused, running ones finish within the drain time, then are
// canceled.
//
// serve imports onnx/lm, onnx/ort and tokenize; it must not import
// pipeline (which knows the TagPR stages) or rewardmodel.
package serve

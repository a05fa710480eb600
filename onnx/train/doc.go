// Package train derives training graphs from inference graphs and runs them
// on a stock ONNX Runtime (any build, CPU or CUDA) as ordinary inference
// sessions: specialization to fixed shapes, reverse-mode autodiff emitting
// standard ONNX ops only, loss blocks, trainable selection and LoRA, the
// AdamW optimizer and loop pieces, safetensors checkpoints with resumable run
// state, and export of a plain ONNX model with the trained weights.
//
// It owns specialization, autodiff, losses, LoRA, optimizer, checkpoints and
// export, and imports only onnx/ort, onnx/ir, onnx/onnxpb, onnx/lock,
// onnx/safetensors and onnx/lm from tagpr.
//
// The pipeline, step by step:
//
//	m, _ := ir.Load("model.onnx")                      // an inference graph
//	ads, _ := train.AddLoRA(m, train.LoRA{Rank: 8})   // optional
//	loss, _ := train.AddNextTokenLoss(m, train.NextTokenLoss{}) // or AddPolicyLoss, AddPairwiseLoss, AddMSELoss
//	sp, _ := train.Specialize(m, shapes)              // fixed shapes, shape subgraphs folded
//	tg, _ := train.Differentiate(sp, loss, train.SelectParams(sp, patterns), keep)
//	tr, _ := train.NewTrainer(tg, train.TrainerOptions{Schedule: train.Schedule{Peak: 3e-4, Warmup: 10, Total: 1000}})
//	res, _ := tr.Step(batch)                          // forward+backward in ORT, AdamW in Go
//	train.Export("out.onnx", m0, tr.Weights(), ads)   // trained initializers, LoRA merged
//
// BuildLMTraining does the first four for a causal LM in the Optimum layout.
//
// Loop is the one training loop of tagpr (SFT, `tagpr train lm`, PRMU and,
// through pipeline/grpo, RL): shuffled epochs from a seeded generator,
// gradient accumulation, checkpoints every N steps, a JSONL step log
// trimmed back to the checkpoint on resume (TrimLog, ReadLog), and
// bit-for-bit resume (weights, AdamW moments, generator state and data
// cursor). A job whose step is not "batch → Trainer.Step" (an RL step
// generates its batch) supplies its own StepFunc; Hooks keep its own
// outputs in step with the checkpoints; Settings (run.json) refuse a
// resume with other settings, and the run folder is locked while it runs.
// Progress is the one report shape of every long job (ProgressFunc).
//
// Specialize runs the model once in ORT with every intermediate's shape (and
// every value computed only from shapes and constants) exposed as outputs,
// then folds those values into initializers. Inputs of zero elements (an
// empty KV cache) become empty initializers.
//
// Differentiate walks the graph backwards from the [1]-shaped loss with one
// gradient rule per op (rules_*.go): broadcasting is undone with ReduceSum +
// Reshape over static shapes, fan-out is summed, paths through shapes, masks
// and indices are cut. An op without a rule on a weight's path is an error
// naming the op and node. Trainable weights become graph inputs (fed from Go
// without copies); gradients are outputs named GradPrefix+weight.
//
// Trainable weights and LoRA targets are chosen by name (patterns.go): a
// pattern selects whole modules (model.layers.0.self_attn.q_proj, or q_proj
// as PEFT's target_modules), and one that matches nothing or part of a
// module is an error naming what it matched. With lm.NameWeights run first
// these are Hugging Face's names. LoRA's default adapts every linear layer
// but the lm head.
//
// Run folders: LockRunDir takes a folder's one-writer lock (flock on
// DIR/.tagpr.lock, dropped by the kernel when the process dies; a second
// process is refused naming the holder's PID); Loop holds it on its Dir.
// RunSettings name what decides a run's result; a Loop records them in
// DIR/run.json and refuses to resume with different ones, naming each.
//
// Weights are owned by Go as []float32 slices (Trainer.Params); ORT reads them
// in place and the optimizer updates them in place. TrainerOptions.Weights
// lets the trainer use another owner's storage, e.g. the generation engine's
// weight inputs (lm.OpenWithWeightInputs), so rollouts always see the current
// policy.
//
// DeviceTrainer (device.go) keeps weights, gradients and AdamW moments in
// device tensors across steps (the update and gradient-norm graphs run
// through IO binding, writing in place), bit-identical to the host Trainer
// on the CPU device; Loop.Device runs a loop on it, and DeviceTrainerFor
// picks it on a GPU.
//
// Numerics guard (guard.go): TrainerOptions and LoRA settings are range
// checked before any work. A step whose loss or gradient is not finite is
// skipped (weights and moments untouched) and logged as a JSON line with a
// null loss; MaxSkipped such steps in a row stop training with a
// *DivergedError naming the likely cause (learning rate too high, or a model
// that is not finite from the start); an update that would make a weight
// non-finite is an error; WriteSafetensors and Export refuse NaN and ±Inf,
// so no checkpoint or export ever holds one. A next-token loss that stays at
// (or above) the uniform-guess level ln V after warmup is reported
// (StepResult.Warning).
//
// Memory at real sizes (docs/large-models.md): the token losses project
// onto the vocabulary in chunks inside one Scan that also computes the
// head's gradients (losses_chunked.go), so no [B,T,V] value exists;
// LMTraining.Recompute recomputes each block's activations in the backward
// pass (recompute.go); LMTraining.Packed trains on rows of several examples
// with attention kept inside each (packing.go); SharePrefix runs each RL
// prompt once for its G completions (prefix.go); EstimateMemory predicts a
// step's peak before any session exists (memory.go).
//
// Correctness oracle: finite differences in float64 through ORT. CastFloat64
// casts a model to double and replaces the ops ORT lacks double kernels for
// (Erf by an everywhere-convergent series, Gelu, Softplus); checks run with
// ORT's "basic" optimization level, since the fused kernels of "all" lose
// ~1e-7 of precision in double.
package train

// Package train derives training graphs from inference graphs and runs them
// on a stock ONNX Runtime: specialization to fixed shapes, reverse-mode
// autodiff emitting standard ONNX ops only, loss blocks (masked next-token
// cross-entropy, GRPO-family policy loss, Bradley–Terry, MSE), trainable
// selection and LoRA adapters, the AdamW optimizer and loop pieces (global-norm
// clipping, warmup schedules, gradient accumulation, non-finite skipping),
// safetensors checkpoints with resumable run state, and export of a plain ONNX
// model with the trained (and LoRA-merged) weights.
//
// Weights are owned by Go as []float32 slices; ORT reads them in place as
// graph inputs and the optimizer updates them in place.
//
// It imports only onnx/ort, onnx/ir, onnx/onnxpb, onnx/lock and onnx/lm.
package train

// Package safetensors reads and writes the safetensors format
// (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header naming each tensor's dtype, shape and byte range,
// then the data.
//
// Open maps a file read-only and hands out each tensor's bytes without
// copying them, so a checkpoint far bigger than free memory can be
// converted one tensor at a time (Release gives a tensor's pages back).
// Write streams tensors to a file, each produced by a callback, and renames
// it into place only when complete. The header is checked on reading: known
// dtypes, shapes that fit, byte ranges that tile the data exactly.
//
// It imports only onnx/ir (half-precision conversions) from tagpr.
package safetensors

// Package lock reads, verifies and edits models.lock, the file that pins every
// artifact a tagpr run loads (runtime library, models, tokenizers, datasets) by
// size and sha256.
//
// It lives under onnx/ because the ONNX Runtime library is the first artifact
// every process loads and onnx/ is the bottom layer; lock itself knows nothing
// of ONNX and imports no other tagpr package.
package lock

// Package ort is tagpr's runtime layer over ONNX Runtime (via
// github.com/yalue/onnxruntime_go): finding and checking the shared library,
// the one process-wide environment, session options and execution providers,
// and named-input runs over Go-owned tensors without copies.
//
// It knows nothing of TagPR and must not import any tagpr package except
// onnx/lock (to find the pinned runtime library) and onnx/onnxpb (to read a
// model's signature without a throw-away session).
package ort

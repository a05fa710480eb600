// Package ort is tagpr's runtime layer over ONNX Runtime (via
// github.com/yalue/onnxruntime_go): finding and checking the shared library,
// the one process-wide environment, session options and execution providers,
// and named-input runs over Go-owned tensors without copies. Start declares
// the process's runtime (provider, device, threads): for CUDA it finds the GPU
// build, preloads the CUDA libraries and fails naming what is missing; from
// then on every session must carry the runtime's options (SessionsSince lists
// them for tests). device.go adds what onnxruntime_go lacks, through ORT's C
// API (headers in include/): tensors in device memory, IO binding, and a
// counter of the bytes crossing between host and device (transfer.go).
//
// It knows nothing of TagPR and must not import any tagpr package except
// onnx/lock (to find the pinned runtime library) and onnx/onnxpb (to read a
// model's signature without a throw-away session).
package ort

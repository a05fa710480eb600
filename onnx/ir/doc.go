// Package ir reads, edits, builds, validates and writes ONNX models
// (onnxpb.ModelProto).
//
//   - I/O: Read (bytes), Load (a file, with its external data), Marshal
//     (deterministic bytes), Write (atomic; optionally moves large
//     initializers into model.onnx.data).
//   - Building: NewGraph, Graph.Input/Output/Initializer/Node/Op/Const,
//     Graph.Subgraph (If/Loop bodies), the Attr* helpers, NewModel. Builder
//     mistakes are collected in Graph.Err and reported by NewModel, so model
//     code reads like the network.
//   - Tensors: Tensor/Scalar/Vector from Go slices; Float32s, Float64s,
//     Int64s, Int32s, Bools read raw_data or the typed fields (float16 and
//     bfloat16 too).
//   - Editing: producers and consumers of values, node removal and
//     replacement, renaming, exposing intermediates as outputs, turning
//     initializers into inputs, casting a float32 model to float64,
//     topological sort.
//   - Validate: structural checks whose errors name the node.
//
// It knows nothing of ONNX Runtime or TagPR and imports no tagpr package but
// onnx/onnxpb.
package ir

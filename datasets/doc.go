// Package datasets owns tagpr's data on disk: Arrow schemas (IPC and Parquet)
// for LaMP examples, tagged chains, rollouts, predictions and cached text
// embeddings; LaMP import and export; profile retrieval; sharded batch
// readers; and the built-in synthetic personalization benchmark.
//
// SCHEMAS.md documents every schema, the task names (LaMP_2M movie tagging,
// LaMP_2N news categorization), sharding, retrieval and the benchmark.
// Entry points: ImportLaMP, ExportLaMP, ExportPredictions; CheckGolds and
// ParseLaMPRating (LaMP's reading of golds and ratings); CreateExamples,
// CreateChains, CreateRollouts, CreatePredictions, CreateEmbeddings (typed
// writers); OpenReader (batches of a chosen size, one shard) and
// ReadExamples/ReadChains/…/ReadEmbeddings; Merge;
// TopKBM25, TopKRecent, SelectProfile; Synth.
//
// Readers and writers are not safe for concurrent use; open one per goroutine.
//
// It must not import tokenize/, onnx/, rewardmodel/ or pipeline/.
package datasets

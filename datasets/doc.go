// Package datasets owns tagpr's data on disk: Arrow schemas (IPC and Parquet)
// for LaMP examples, tagged chains, rollouts and predictions; LaMP import and
// export; profile retrieval; sharded batch readers; and the built-in synthetic
// personalization benchmark.
//
// It must not import tokenize/, onnx/, rewardmodel/ or pipeline/.
package datasets

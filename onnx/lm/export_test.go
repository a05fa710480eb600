package lm

// Benchmark bodies for the external test package (lm_test), whose
// benchmarks may import packages that import lm (the importer's models).
var BenchSampleLogProbs = benchSampleLogProbs

package train

import (
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
)

// largeVocabConfig is BenchmarkTrainStep's llama with Qwen's 151,936-token
// vocabulary (tied embeddings: 40.5M parameters, 39M of them the embedding).
func largeVocabConfig() lm.Config {
	c := benchConfig()
	c.Vocab = 151936
	c.MaxPositions = 1024
	return c
}

// BenchmarkLargeVocab: training with a 151,936-token vocabulary at 2×640
// tokens, each run in a child process: full fine-tuning with the chunked
// vocabulary head (peak RSS against 16 B/param + forward activations and
// against EstimateMemory), the same with the full [B,T,V] logits, and LoRA
// (rank 8), with tokens/s of each.
func BenchmarkLargeVocab(b *testing.B) {
	const B, T = 2, 640
	cfg := largeVocabConfig()
	runs := []struct {
		name string
		spec rssSpec
	}{
		{"chunked", rssSpec{Cfg: cfg, B: B, T: T, Steps: 2}},
		{"full_logits", rssSpec{Cfg: cfg, B: B, T: T, Chunk: -1, Steps: 2}},
		{"lora", rssSpec{Cfg: cfg, B: B, T: T, LoRA: 8, Steps: 2}},
	}
	res := map[string]rssResult{}
	for i := 0; i < b.N; i++ {
		for _, r := range runs {
			got, err := measureRSS(r.spec)
			if err != nil {
				b.Fatalf("%s: %v", r.name, err)
			}
			res[r.name] = got
			b.Logf("%s:\n%s", r.name, got.Log)
		}
	}
	mb := func(n int64) float64 { return float64(n) / (1 << 20) }
	c, f, l := res["chunked"], res["full_logits"], res["lora"]
	b.ReportMetric(mb(c.RSS), "chunked_peak_rss_MB")
	b.ReportMetric(float64(c.RSS)/float64(c.Budget), "chunked_rss_over_16Bparam_plus_act")
	b.ReportMetric(float64(c.RSS)/float64(c.Estimate), "chunked_rss_over_estimate")
	b.ReportMetric(B*T/c.StepS, "chunked_tokens/s")
	b.ReportMetric(mb(f.RSS), "full_logits_peak_rss_MB")
	b.ReportMetric(float64(f.RSS)/float64(c.RSS), "full_logits_rss_over_chunked")
	b.ReportMetric(B*T/f.StepS, "full_logits_tokens/s")
	b.ReportMetric(mb(l.RSS), "lora_peak_rss_MB")
	b.ReportMetric(float64(l.RSS)/float64(c.RSS), "lora_rss_over_full_ft")
	b.ReportMetric(float64(l.RSS)/float64(l.Estimate), "lora_rss_over_estimate")
	b.ReportMetric(B*T/l.StepS, "lora_tokens/s")
	b.ReportMetric(float64(c.Params)/1e6, "Mparams")
}

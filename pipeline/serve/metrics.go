package serve

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tagpr/tagpr/onnx/lm"
)

// metrics are the server's Prometheus series, written in the text
// exposition format (version 0.0.4) by hand: a few counters and histograms
// do not need a client library.
type metrics struct {
	mu       sync.Mutex
	requests map[[2]string]int64 // (endpoint, status code) → count
	inFlight int64
	ttft     histogram // request arrival → first token
	e2e      histogram // request arrival → last byte
	queue    histogram // submitted → prefill started
}

// Buckets in seconds, from a tiny model's milliseconds to long completions.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

func newMetrics() *metrics {
	return &metrics{requests: map[[2]string]int64{}, ttft: newHistogram(latencyBuckets),
		e2e: newHistogram(latencyBuckets), queue: newHistogram(latencyBuckets)}
}

func (m *metrics) request(endpoint string, code int) {
	m.mu.Lock()
	m.requests[[2]string{endpoint, fmt.Sprint(code)}]++
	m.mu.Unlock()
}

func (m *metrics) addInFlight(d int64) {
	m.mu.Lock()
	m.inFlight += d
	m.mu.Unlock()
}

func (m *metrics) observe(h *histogram, d time.Duration) {
	m.mu.Lock()
	h.observe(d.Seconds())
	m.mu.Unlock()
}

type histogram struct {
	bounds []float64
	counts []int64 // per bucket (not cumulative); the last is +Inf
	sum    float64
	n      int64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]int64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	h.counts[sort.SearchFloat64s(h.bounds, v)]++
	h.sum += v
	h.n++
}

// write renders every series; b is the batcher's snapshot.
func (m *metrics) write(w io.Writer, b lm.BatcherStats, model string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sb strings.Builder
	family := func(name, typ, help string) {
		fmt.Fprintf(&sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	label := fmt.Sprintf("model=%q", model)
	family("tagpr_requests_total", "counter", "HTTP requests answered, by endpoint and status code.")
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		fmt.Fprintf(&sb, "tagpr_requests_total{%s,endpoint=%q,code=%q} %d\n", label, k[0], k[1], m.requests[k])
	}
	gauge := func(name, help string, v float64) {
		family(name, "gauge", help)
		fmt.Fprintf(&sb, "%s{%s} %s\n", name, label, num(v))
	}
	counter := func(name, help string, v float64) {
		family(name, "counter", help)
		fmt.Fprintf(&sb, "%s{%s} %s\n", name, label, num(v))
	}
	gauge("tagpr_requests_in_flight", "Generation requests being answered (queued or decoding).", float64(m.inFlight))
	gauge("tagpr_queue_requests", "Requests waiting to join the decode batch.", float64(b.Queued))
	gauge("tagpr_batch_rows", "Sequences in the decode batch now.", float64(b.Rows))
	gauge("tagpr_cache_positions", "Rows × positions held in the KV cache now.", float64(b.CachePositions))
	counter("tagpr_prompt_tokens_total", "Prompt tokens prefilled.", float64(b.PromptTokens))
	counter("tagpr_generation_tokens_total", "Tokens generated.", float64(b.Generated))
	counter("tagpr_decode_steps_total", "Decode steps run.", float64(b.DecodeSteps))
	counter("tagpr_decode_row_steps_total", "Batch rows summed over decode steps (÷ steps = mean batch size).", float64(b.RowSteps))
	counter("tagpr_prefills_total", "Prefill rounds (one per group of joining requests).", float64(b.Prefills))
	counter("tagpr_generations_finished_total", "Generation requests that finished.", float64(b.Finished))
	counter("tagpr_generations_failed_total", "Generation requests canceled, timed out or failed.", float64(b.Failed))
	counter("tagpr_prefill_seconds_total", "Time spent prefilling.", b.PrefillTime.Seconds())
	counter("tagpr_decode_seconds_total", "Time spent in decode steps.", b.DecodeTime.Seconds())
	for _, h := range []struct {
		name, help string
		h          *histogram
	}{
		{"tagpr_time_to_first_token_seconds", "Request arrival to its first generated token.", &m.ttft},
		{"tagpr_request_duration_seconds", "Request arrival to the end of its answer.", &m.e2e},
		{"tagpr_queue_wait_seconds", "Time a request waited before joining the batch.", &m.queue},
	} {
		family(h.name, "histogram", h.help)
		var cum int64
		for i, c := range h.h.counts {
			cum += c
			le := "+Inf"
			if i < len(h.h.bounds) {
				le = num(h.h.bounds[i])
			}
			fmt.Fprintf(&sb, "%s_bucket{%s,le=%q} %d\n", h.name, label, le, cum)
		}
		fmt.Fprintf(&sb, "%s_sum{%s} %s\n%s_count{%s} %d\n", h.name, label, num(h.h.sum), h.name, label, h.h.n)
	}
	io.WriteString(w, sb.String())
}

func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", v)
}

package lm

import (
	"context"
	"testing"

	"github.com/tagpr/tagpr/onnx/ort"
)

// batcherRun is one driven batcher scenario's completions per request and,
// on the device, what each engine call moved.
type batcherRun struct {
	got [][]Completion
}

// driveBatcher runs a fixed schedule on a batcher without its goroutine,
// so the host and device batchers see the same joins and leaves at the
// same steps: four requests join at once; after three steps (some short
// ones have finished and left), four more join the running batch, taking
// the freed rows; then the batch decodes until every row has left. check,
// when set, is called with what each admit or step moved (rows: before
// it; S: the most cache positions during it).
func driveBatcher(t *testing.T, m *Model, check func(what string, b *Batcher, rowsBefore, S int, maskKept bool, moved ort.Transfers)) batcherRun {
	t.Helper()
	b, err := newBatcher(m, BatcherOptions{MaxRows: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer b.run.release()
	ctx := context.Background()
	var streams []*Stream
	submit := func(from, to int) {
		for i := from; i < to; i++ {
			r := Request{Prompt: batcherPrompts[i], MaxNewTokens: 2 + 3*i, IgnoreEOS: i%2 == 0, LogProbs: true, TopLogProbs: i % 3}
			if i%3 == 1 {
				r.Sampling, r.Seed, r.N = Sampling{Temperature: 0.8, TopP: 0.9}, uint64(i), 2
			}
			s, err := b.Submit(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, s)
		}
	}
	measure := func(what string, f func()) {
		rows, P := len(b.rows), b.run.P
		kept := b.run.dc != nil && b.run.dc.mask != nil
		before := ort.TransferCounts()
		f()
		if check != nil {
			check(what, b, rows, max(P+1, b.run.P), kept, ort.TransferCounts().Sub(before))
		}
	}
	step := func() {
		if len(b.rows) > 0 {
			measure("step", func() { b.step(ctx) })
		}
	}
	submit(0, 4)
	measure("join", func() { b.admit(ctx) })
	for k := 0; k < 3; k++ {
		step()
	}
	left := len(b.rows)
	submit(4, len(batcherPrompts))
	measure("join", func() { b.admit(ctx) })
	if left >= 6 {
		t.Fatalf("%d rows still running after 3 steps: the second join reuses no freed rows", left)
	}
	for len(b.rows) > 0 {
		step()
	}
	var out batcherRun
	for i, s := range streams {
		c, err := s.Collect(ctx)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		out.got = append(out.got, c)
	}
	return out
}

// The batcher on a device-resident model (here the CPU device, through the
// IO binding code a GPU runs) serves the host batcher's tokens and
// log-probs bit for bit, through joins mid-decode, finished rows leaving
// and freed rows reused; per decode step only the ids, positions and
// head values go in and the last logits and head outputs come out (the
// mask once after a join or leave), and the cache moves only within the
// device.
func TestDeviceBatcherMatchesHost(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			host, dev := loadOn(t, c, false), loadOn(t, c, true)
			if on, _ := dev.DeviceResident(); !on {
				t.Fatal("DeviceResident did not take")
			}
			want := driveBatcher(t, host, nil)
			lay := dev.Layout
			var steps, relayouts int
			got := driveBatcher(t, dev, func(what string, b *Batcher, rows, S int, maskKept bool, moved ort.Transfers) {
				B := max(rows, len(b.rows))
				cache := int64(2*lay.Layers*B*lay.KVHeads*S*lay.HeadDim) * 4
				if moved.HostToDevice >= cache || moved.DeviceToHost >= cache {
					t.Fatalf("%s: moved %v, as much as the cache (%d B)", what, moved, cache)
				}
				if b.run.dc == nil {
					t.Fatal("the batcher's cache is not on the device")
				}
				if what != "step" {
					return
				}
				steps++
				in := int64(B*3*8 + 16) // ids, positions, per-row head inputs; logits_to_keep, branch
				if !maskKept {
					in += int64(B * S * 8)
				}
				// The logits; the head's probabilities, log-probs and row
				// scalars: nothing grows with the positions.
				out := int64(B * (3*lay.Vocab + 4) * 4)
				if moved.HostToDevice > in || moved.DeviceToHost > out {
					t.Fatalf("step of %d rows over %d positions moved %v, want at most %d B in, %d B out", B, S, moved, in, out)
				}
				if len(b.rows) == rows && moved.DeviceToDevice != 0 {
					t.Fatalf("a step no row left moved %d B within the device", moved.DeviceToDevice)
				}
				if len(b.rows) < rows && len(b.rows) > 0 {
					relayouts++
					if moved.DeviceToDevice == 0 {
						t.Fatal("rows left but nothing was copied within the device")
					}
				}
			})
			for i := range want.got {
				sameCompletions(t, "request", want.got[i], got.got[i])
			}
			if steps == 0 || relayouts == 0 {
				t.Fatalf("%d steps, %d leaves re-laid out: the scenario exercised nothing", steps, relayouts)
			}
		})
	}
}

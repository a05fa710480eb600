package lm

import (
	"context"
	"math"
	"testing"

	"github.com/tagpr/tagpr/onnx/ort"
)

// loadOn loads a built-in test model, on the device path or the host one.
func loadOn(t testing.TB, c Config, device bool) *Model {
	return loadBuilt(t, c, LoadOptions{Config: testHFConfig(c), DeviceResident: device, Session: ort.Options{IntraOpThreads: 1}})
}

func testHFConfig(c Config) *HFConfig {
	return &HFConfig{MaxPositions: c.MaxPositions, VocabSize: HFConfigFor(c)["vocab_size"].(int), EOSTokenID: TokenIDs{c.EOS}}
}

// sameCompletions fails unless a and b hold the same tokens, log-probs (bit
// for bit) and finish reasons.
func sameCompletions(t *testing.T, what string, a, b []Completion) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d completions vs %d", what, len(a), len(b))
	}
	for i := range a {
		if !equalIDs(a[i].Tokens, b[i].Tokens) || a[i].Finish != b[i].Finish || len(a[i].LogProbs) != len(b[i].LogProbs) {
			t.Fatalf("%s: completion %d: %v (%s) vs %v (%s)", what, i, a[i].Tokens, a[i].Finish, b[i].Tokens, b[i].Finish)
		}
		for j := range a[i].LogProbs {
			if math.Float32bits(a[i].LogProbs[j]) != math.Float32bits(b[i].LogProbs[j]) {
				t.Fatalf("%s: completion %d token %d: log-prob %v vs %v", what, i, j, a[i].LogProbs[j], b[i].LogProbs[j])
			}
		}
	}
}

// The device-resident path (run here on the CPU device through the same IO
// binding code a GPU uses) gives the host path's tokens and log-probs bit
// for bit: greedy and sampled, groups (the prompt's cache copied to its
// rows on the device), finished rows dropped, prefill in chunks.
func TestDeviceResidentGenerationMatchesHost(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			host, dev := loadOn(t, c, false), loadOn(t, c, true)
			if on, _ := dev.DeviceResident(); !on {
				t.Fatal("DeviceResident did not take")
			}
			cases := map[string]GenerateOptions{
				"greedy":         {MaxNewTokens: 10},
				"greedy-chunked": {MaxNewTokens: 6, PrefillChunk: 3},
				"sampled-groups": {MaxNewTokens: 12, NumGenerations: 3, Sampling: Sampling{Temperature: 0.9, TopK: 40, TopP: 0.95}, Seed: 7},
				"untempered":     {MaxNewTokens: 8, NumGenerations: 2, Sampling: Sampling{Temperature: 1}, Seed: 3},
			}
			for what, o := range cases {
				a, _, err := host.Generate(context.Background(), testPrompts, o)
				if err != nil {
					t.Fatal(err)
				}
				// EOS ids that end some completions early, so rows are dropped.
				for i := 0; i < min(4, len(a)); i++ {
					if len(a[i].Tokens) > 2 {
						o.EOS = append(o.EOS, a[i].Tokens[1+i%2])
					}
				}
				a, sa, err := host.Generate(context.Background(), testPrompts, o)
				if err != nil {
					t.Fatal(err)
				}
				b, sb, err := dev.Generate(context.Background(), testPrompts, o)
				if err != nil {
					t.Fatal(err)
				}
				sameCompletions(t, what, a, b)
				if sa.Compactions != sb.Compactions || sa.DecodeSteps != sb.DecodeSteps {
					t.Fatalf("%s: host %d compactions %d steps, device %d and %d", what, sa.Compactions, sa.DecodeSteps, sb.Compactions, sb.DecodeSteps)
				}
				if what == "sampled-groups" && sb.Compactions == 0 {
					t.Errorf("%s: no finished rows were dropped: compaction on the device is untested", what)
				}
			}
			// Forward (the scorer) runs the same path.
			la, _, err := host.Forward(context.Background(), testPrompts, 0)
			if err != nil {
				t.Fatal(err)
			}
			lb, _, err := dev.Forward(context.Background(), testPrompts, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i := range la {
				if math.Float32bits(la[i]) != math.Float32bits(lb[i]) {
					t.Fatalf("forward logit %d: %v vs %v", i, la[i], lb[i])
				}
			}
		})
	}
}

// stepBytes is what one run of B rows, T new columns over S cache positions
// moves in and out when the cache stays on the device: the ids, positions
// and logits_to_keep (and use_cache_branch) in, the mask too when it is not
// grown on the device (mask), the kept logits out.
func stepBytes(m *Model, B, T, S, K int, mask bool) (in, out int64) {
	in = int64(B * T * 8)
	if mask {
		in += int64(B * S * 8)
	}
	if m.slot.pos >= 0 {
		in += int64(B * T * 8)
	}
	if m.slot.keep >= 0 {
		in += 8
	}
	if m.slot.branch >= 0 {
		in++
	}
	return in, int64(B * K * m.Layout.Vocab * 4)
}

// The transfer counter proves what crosses per step: only ids, positions,
// logits_to_keep and the last position's logits, never the cache, the
// weights (bound as device tensors) or, after the prompt, the mask.
func TestDeviceResidentGenerationTransfers(t *testing.T) {
	c := testConfigs()["llama"]
	pm, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	m, ws, err := OpenWithWeightInputs(pm, "llama weights-as-inputs", nil, LoadOptions{Config: testHFConfig(c), DeviceResident: true, Session: ort.Options{IntraOpThreads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var weightBytes int64
	for _, w := range ws {
		weightBytes += int64(len(w.Data) * 4)
	}
	before := ort.TransferCounts()
	dw, err := m.UploadWeights(ws)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, d := range dw {
			d.Release()
		}
	}()
	if up := ort.TransferCounts().Sub(before); up.HostToDevice != weightBytes {
		t.Fatalf("uploading the weights moved %v, want %d B to the device", up, weightBytes)
	}

	prompts := [][]int64{{1, 5, 9, 14}, {1, 40, 41, 42}}
	B, T0, N := len(prompts), 4, 9
	o := GenerateOptions{MaxNewTokens: N, IgnoreEOS: true}
	before = ort.TransferCounts()
	got, st, err := m.Generate(context.Background(), prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	moved := ort.TransferCounts().Sub(before)
	wantIn, wantOut := stepBytes(m, B, T0, T0, 1, true)
	for k := 1; k < N; k++ {
		i, o := stepBytes(m, B, 1, T0+k, 1, false)
		wantIn, wantOut = wantIn+i, wantOut+o
	}
	lay := m.Layout
	cacheStep := int64(2 * lay.Layers * B * lay.KVHeads * (T0 + N) * lay.HeadDim * 4)
	runs := int64(st.PrefillRuns + st.DecodeSteps)
	t.Logf("%d runs (%d decode steps): %v; one step's cache is %d B, the weights %d B", runs, st.DecodeSteps, moved, cacheStep, weightBytes)
	// Exactly the ids, positions, logits_to_keep (the mask once) in and the
	// last logits out; a decode head computed in the model's run (#15) may
	// add its per-row inputs (B float32 or int64 a run) and outputs (at most
	// B×V floats and B scalars a run), never anything of the cache's size.
	extraIn, extraOut := moved.HostToDevice-wantIn, moved.DeviceToHost-wantOut
	if moved.DeviceToDevice != 0 || extraIn < 0 || extraIn > runs*int64(8*B+8) || extraOut < 0 || extraOut > runs*int64(4*B*(lay.Vocab+2)) {
		t.Fatalf("generation moved %v, want host->device %d B (ids, positions, logits_to_keep; the mask once), device->host %d B (last logits), device->device 0", moved, wantIn, wantOut)
	}
	if moved.HostToDevice >= cacheStep || moved.DeviceToHost/runs >= cacheStep {
		t.Fatalf("generation moved %v: as much as the cache (%d B)", moved, cacheStep)
	}

	// The same weights fed from Go on the host path give the same tokens.
	pm2, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	hm, hws, err := OpenWithWeightInputs(pm2, "llama host", nil, LoadOptions{Config: testHFConfig(c), Session: ort.Options{IntraOpThreads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		hm.Close()
		for _, w := range hws {
			w.Tensor.Destroy()
		}
	}()
	want, _, err := hm.Generate(context.Background(), prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	sameCompletions(t, "weights as device inputs", want, got)

	// A weight updated on the device (as a trainer would) changes the next
	// generation exactly as the same update in Go memory does.
	for i := range hws {
		if hws[i].Name == ws[0].Name {
			for j := range hws[i].Data {
				hws[i].Data[j] *= 1.5
			}
			if err := dw[ws[0].Name].Upload(hws[i].Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, _, err = hm.Generate(context.Background(), prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err = m.Generate(context.Background(), prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	sameCompletions(t, "after a weight update", want, got)
}

func TestBindDeviceRefusals(t *testing.T) {
	c := testConfigs()["gpt2"]
	host := loadOn(t, c, false)
	dev := loadOn(t, c, true)
	d, err := ort.Upload(dev.Session(), ort.Device{Provider: "cpu"}, []int64{1}, []float32{1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	if err := host.BindDevice("x", d); err == nil {
		t.Fatal("a host-path model took a device tensor")
	}
	if err := dev.BindDevice(InputIDs, d); err == nil {
		t.Fatal("input_ids bound to a device tensor")
	}
	if err := dev.BindDevice("nope", d); err == nil {
		t.Fatal("an unknown input was bound")
	}
}

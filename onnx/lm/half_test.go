package lm

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// Half-precision MatMuls run on ORT's CPU kernels here: logits within
// float16's precision of the float32 model's, the weights stored in half
// the bytes, and generation (host and device-resident paths) works on them.
func TestHalfGeneration(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			pm, err := Build(c)
			if err != nil {
				t.Fatal(err)
			}
			var f32 int64
			for _, w := range pm.Graph.Initializer {
				if w.GetDataType() == ir.Float {
					f32 += 4 * ir.NumElements(w.GetDims())
				}
			}
			b, err := ir.Marshal(pm)
			if err != nil {
				t.Fatal(err)
			}
			st, err := HalfMatMuls(pm)
			if err != nil {
				t.Fatal(err)
			}
			if st.MatMuls < 4*c.Layers {
				t.Fatalf("%d MatMuls in float16, want at least %d (q, k, v, o… per layer)", st.MatMuls, 4*c.Layers)
			}
			t.Logf("%d MatMuls in float16 over %d bytes of float16 weights (float32 weights were %d bytes)", st.MatMuls, st.WeightBytes, f32)
			full := loadOn(t, c, false)
			half, err := LoadBytes(b, "half", LoadOptions{Config: testHFConfig(c), Half: true, Session: ort.Options{IntraOpThreads: 1}})
			if err != nil {
				t.Fatal(err)
			}
			defer half.Close()
			la, _, err := full.Forward(context.Background(), testPrompts, 0)
			if err != nil {
				t.Fatal(err)
			}
			lb, _, err := half.Forward(context.Background(), testPrompts, 0)
			if err != nil {
				t.Fatal(err)
			}
			worst, scale := 0.0, 0.0
			for i := range la {
				worst = math.Max(worst, math.Abs(float64(la[i]-lb[i])))
				scale = math.Max(scale, math.Abs(float64(la[i])))
			}
			t.Logf("max |logit float16 - float32| = %.3g (logits up to %.3g)", worst, scale)
			if worst == 0 || worst > 2e-2*scale {
				t.Fatalf("float16 logits differ from float32 by %.3g (logits up to %.3g): want 0 < diff <= 2%%", worst, scale)
			}
			o := GenerateOptions{MaxNewTokens: 8, IgnoreEOS: true}
			a, _, err := full.Generate(context.Background(), testPrompts, o)
			if err != nil {
				t.Fatal(err)
			}
			h, _, err := half.Generate(context.Background(), testPrompts, o)
			if err != nil {
				t.Fatal(err)
			}
			same, n := 0, 0
			for i := range a {
				for j := range a[i].Tokens {
					n++
					if h[i].Tokens[j] == a[i].Tokens[j] {
						same++
					} else {
						break // the rest follows another prefix
					}
				}
			}
			t.Logf("greedy float16 vs float32: %d of %d tokens agree before the first difference", same, n)
			// The device-resident path runs the float16 graph too, bit for bit.
			dev, err := LoadBytes(b, "half device", LoadOptions{Config: testHFConfig(c), Half: true, DeviceResident: true, Session: ort.Options{IntraOpThreads: 1}})
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			d, _, err := dev.Generate(context.Background(), testPrompts, o)
			if err != nil {
				t.Fatal(err)
			}
			sameCompletions(t, "float16 on the device path", h, d)
		})
	}
}

// Weights a trainer owns, fed as inputs, generate through float16 copies
// on the device: cast from the float32 masters at upload and again by
// RefreshHalf after an update, with nothing crossing to the host.
func TestHalfWeightInputs(t *testing.T) {
	c := testConfigs()["llama"]
	open := func(half bool) (*Model, []Weight) {
		pm, err := Build(c)
		if err != nil {
			t.Fatal(err)
		}
		m, ws, err := OpenWithWeightInputs(pm, "llama", nil, LoadOptions{Config: testHFConfig(c), Half: half, DeviceResident: half, Session: ort.Options{IntraOpThreads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m, ws
	}
	if _, _, err := OpenWithWeightInputs(mustBuild(t, c), "host", nil, LoadOptions{Config: testHFConfig(c), Half: true}); err == nil {
		t.Fatal("float16 weight inputs on the host path were accepted")
	}
	host, hws := open(false)
	half, ws := open(true)
	if !half.HalfWeights() {
		t.Fatal("no weight is fed as float16")
	}
	dw, err := half.UploadWeights(ws)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, d := range dw {
			d.Release()
		}
	}()
	compare := func(what string) {
		t.Helper()
		a, _, err := host.Forward(context.Background(), testPrompts, 0)
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := half.Forward(context.Background(), testPrompts, 0)
		if err != nil {
			t.Fatal(err)
		}
		worst, scale := 0.0, 0.0
		for i := range a {
			worst = math.Max(worst, math.Abs(float64(a[i]-b[i])))
			scale = math.Max(scale, math.Abs(float64(a[i])))
		}
		t.Logf("%s: max |logit float16 - float32| = %.3g (logits up to %.3g)", what, worst, scale)
		if worst == 0 || worst > 2e-2*scale {
			t.Fatalf("%s: float16 logits off by %.3g (logits up to %.3g)", what, worst, scale)
		}
	}
	compare("uploaded")
	// The trainer's float32 masters: the shared ones, and its own for the
	// weights generation reads only in float16. One of these changes.
	masters := map[string]*ort.DeviceTensor{}
	var changed string
	for i, w := range hws {
		if dw[w.Name] != nil {
			masters[w.Name] = dw[w.Name]
			continue
		}
		if changed == "" {
			changed = w.Name
			for j := range hws[i].Data {
				hws[i].Data[j] *= -1.5
			}
		}
		d, err := ort.Upload(half.Session(), ort.Device{Provider: "cpu"}, w.Shape, hws[i].Data)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Release()
		masters[w.Name] = d
	}
	if changed == "" {
		t.Fatal("every weight is also read in float32")
	}
	before := ort.TransferCounts()
	if err := half.RefreshHalf(masters); err != nil {
		t.Fatal(err)
	}
	if moved := ort.TransferCounts().Sub(before); moved.HostToDevice != 0 || moved.DeviceToHost != 0 {
		t.Fatalf("refreshing the float16 weights moved %v", moved)
	}
	compare("after " + changed + " changed")
}

func mustBuild(t *testing.T, c Config) *onnxpb.ModelProto {
	t.Helper()
	pm, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	return pm
}

// A model too big to edit in one protobuf message (here: the threshold
// lowered to a byte, the weights in an external data file as a 0.5B
// model's are) is made float16 through a temporary file with external
// data, and generates exactly as the in-memory float16 model.
func TestHalfLargeModelPath(t *testing.T) {
	c := testConfigs()["llama"]
	pm, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "model.onnx")
	if err := ir.Write(pm, file, ir.WriteOptions{ExternalDataThreshold: 64}); err != nil {
		t.Fatal(err)
	}
	b, err := ir.Marshal(pm)
	if err != nil {
		t.Fatal(err)
	}
	o := LoadOptions{Config: testHFConfig(c), Half: true, Session: ort.Options{IntraOpThreads: 1}}
	small, err := LoadBytes(b, "half in memory", o)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	old := halfInMemoryBytes
	halfInMemoryBytes = 1
	defer func() { halfInMemoryBytes = old }()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	large, err := Load(file, o)
	if err != nil {
		t.Fatal(err)
	}
	defer large.Close()
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("the temporary float16 model was left in %s: %v", tmp, left)
	}
	go1 := GenerateOptions{MaxNewTokens: 8, NumGenerations: 2, Sampling: Sampling{Temperature: 0.9}, Seed: 5}
	want, _, err := small.Generate(context.Background(), testPrompts, go1)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := large.Generate(context.Background(), testPrompts, go1)
	if err != nil {
		t.Fatal(err)
	}
	sameCompletions(t, "float16 through external data", want, got)
}

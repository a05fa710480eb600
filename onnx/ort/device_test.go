package ort

import (
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func gpt2Session(t *testing.T) *Session {
	t.Helper()
	s, err := NewSessionFromFile(filepath.Join("..", "testdata", "pytorch", "gpt2", "model.onnx"), Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Destroy() })
	return s
}

func TestSessionHandle(t *testing.T) {
	s := gpt2Session(t)
	n, err := s.inputCount()
	if err != nil || n != len(s.Inputs()) {
		t.Fatalf("ORT counts %d inputs (%v) through the handle, the session %d", n, err, len(s.Inputs()))
	}
}

// gpt2Step builds the host inputs of one decode step of the test GPT-2
// (4 heads of 8, 2 layers) for a batch of one: ids at positions past…past+len.
func gpt2Step(t *testing.T, ids []int64, past int) map[string]Value {
	t.Helper()
	T := int64(len(ids))
	mask := make([]int64, past+len(ids))
	for i := range mask {
		mask[i] = 1
	}
	pos := make([]int64, len(ids))
	for i := range pos {
		pos[i] = int64(past + i)
	}
	in := map[string]Value{}
	for name, v := range map[string][]int64{"input_ids": ids, "attention_mask": mask, "position_ids": pos} {
		shape := []int64{1, T}
		if name == "attention_mask" {
			shape = []int64{1, int64(len(mask))}
		}
		tt, err := NewTensor(shape, v)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tt.Destroy() })
		in[name] = tt
	}
	return in
}

var gpt2Cache = []string{"0.key", "0.value", "1.key", "1.value"}

// A KV-cache decode through IO binding, with the cache left in device memory
// between runs (here the CPU's) and only logits downloaded, gives the
// logits of ordinary runs over Go tensors.
func TestBindingKeepsTheCacheOnTheDevice(t *testing.T) {
	s := gpt2Session(t)
	steps := [][]int64{{5, 17, 42, 8}, {3}, {77}}

	// Reference: Run with Go tensors, the cache copied out and back in.
	var want [][]float32
	past := map[string]Value{}
	for _, c := range gpt2Cache {
		e, _ := NewTensor([]int64{1, 4, 0, 8}, []float32{})
		past["past_key_values."+c] = e
	}
	n := 0
	for _, ids := range steps {
		in := gpt2Step(t, ids, n)
		for k, v := range past {
			in[k] = v
		}
		res, err := s.Run(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := Data[float32]("logits", res.Get("logits"))
		want = append(want, append([]float32(nil), l...))
		for _, c := range gpt2Cache {
			past["past_key_values."+c] = res.Get("present." + c)
		}
		n += len(ids)
	}

	dev := DeviceFor(Options{})
	b, err := s.NewBinding()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cache := map[string]*DeviceTensor{}
	for _, c := range gpt2Cache {
		e, err := NewDeviceTensor[float32](s, dev, []int64{1, 4, 0, 8})
		if err != nil {
			t.Fatal(err)
		}
		cache["past_key_values."+c] = e
		if err := b.BindOutputTo("present."+c, dev); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.BindOutputTo("logits", dev); err != nil {
		t.Fatal(err)
	}
	n = 0
	for k, ids := range steps {
		for name, v := range gpt2Step(t, ids, n) {
			if name == "input_ids" && k > 0 {
				// Token ids uploaded to the device, as a sampled id would be.
				d, err := Upload(s, dev, []int64{1, 1}, ids)
				if err != nil {
					t.Fatal(err)
				}
				defer d.Release()
				err = b.BindDeviceInput(name, d)
				if err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := b.BindInput(name, v); err != nil {
				t.Fatal(err)
			}
		}
		for name, d := range cache {
			if err := b.BindDeviceInput(name, d); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Run(); err != nil {
			t.Fatal(err)
		}
		outs, err := b.Outputs()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Download[float32](outs["logits"])
		if err != nil {
			t.Fatal(err)
		}
		outs["logits"].Release()
		if len(got) != len(want[k]) {
			t.Fatalf("step %d: %d logits, want %d", k, len(got), len(want[k]))
		}
		for i := range got {
			if d := math.Abs(float64(got[i] - want[k][i])); d > 1e-6 {
				t.Fatalf("step %d logit %d: %v vs %v", k, i, got[i], want[k][i])
			}
		}
		for _, c := range gpt2Cache {
			old := cache["past_key_values."+c]
			cache["past_key_values."+c] = outs["present."+c]
			old.Release()
		}
		n += len(ids)
		if sh := cache["past_key_values.0.key"].Shape(); sh[2] != int64(n) {
			t.Fatalf("step %d: cache shape %v, want %d positions", k, sh, n)
		}
	}
	for _, d := range cache {
		d.Release()
	}
}

func TestDeviceTensorsRefuseMisuse(t *testing.T) {
	s := gpt2Session(t)
	dev := DeviceFor(Options{Provider: "cpu"})
	d, err := Upload(s, dev, []int64{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Download[float32](d); err != nil || got[5] != 6 {
		t.Fatalf("round trip %v, %v", got, err)
	}
	if err := d.Upload([]float32{1}); err == nil || !strings.Contains(err.Error(), "[2 3]") {
		t.Fatalf("short upload: %v", err)
	}
	if _, err := Download[int64](d); err == nil {
		t.Fatal("float32 tensor downloaded as int64")
	}
	b, err := s.NewBinding()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.BindDeviceInput("nope", d); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown input: %v", err)
	}
	if err := b.BindOutputTo("nope", dev); err == nil {
		t.Fatal("unknown output bound")
	}
	d.Release()
	d.Release()
	if err := b.BindDeviceInput("input_ids", d); err == nil {
		t.Fatal("a released tensor was bound")
	}
	// A CUDA tensor needs a session on CUDA: refused here, naming the device.
	if _, err := NewDeviceTensor[float32](s, Device{Provider: "cuda"}, []int64{1}); err == nil || !strings.Contains(err.Error(), "cuda:0") {
		t.Fatalf("cuda tensor on a CPU session: %v", err)
	}
	if DeviceFor(Options{Provider: "CUDA", CUDADevice: 1}).String() != "cuda:"+strconv.Itoa(1) {
		t.Fatal("DeviceFor")
	}
}

package hf_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/safetensors"
)

// encoderCheckpoint is the test encoder's weights as BertModel saves them
// (scripts/rewardmodel/encoder_checkpoint.py); rewardmodel's tests check
// the import against PyTorch's embeddings.
var encoderCheckpoint = filepath.Join("..", "..", "rewardmodel", "testdata", "encoder-hf")

// copyEncoder copies the checkpoint into parent/ckpt, renaming its tensors
// with rename and adding extra ones.
func copyEncoder(t *testing.T, parent string, rename func(string) string, extra ...safetensors.Tensor) string {
	t.Helper()
	dir := filepath.Join(parent, "ckpt")
	if err := os.CopyFS(dir, os.DirFS(encoderCheckpoint)); err != nil {
		t.Fatal(err)
	}
	if rename == nil && len(extra) == 0 {
		return dir
	}
	f, err := safetensors.Open(filepath.Join(encoderCheckpoint, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []safetensors.Tensor
	for _, name := range f.Names() {
		e, _ := f.Entry(name)
		b, err := f.Bytes(name)
		if err != nil {
			t.Fatal(err)
		}
		if rename != nil {
			name = rename(name)
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: e.DType, Shape: e.Shape, Data: bytes.Clone(b)})
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), append(ts, extra...), map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A BertForMaskedLM-style checkpoint ("bert." prefix, a pretraining head)
// imports to the same encoder as BertModel's; the pooler and the head are
// listed as unused.
func TestImportEncoderReadsPrefixedCheckpoints(t *testing.T) {
	root := t.TempDir()
	plain := copyEncoder(t, filepath.Join(root, "a"), nil)
	head := safetensors.Tensor{Name: "cls.predictions.bias", DType: "F32", Shape: []int64{300}, Data: make([]byte, 4*300)}
	prefixed := copyEncoder(t, filepath.Join(root, "b"), func(n string) string { return "bert." + n }, head)
	a, err := hf.ImportEncoder(plain, filepath.Join(root, "a", "out"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hf.ImportEncoder(prefixed, filepath.Join(root, "b", "out"))
	if err != nil {
		t.Fatal(err)
	}
	ma, _ := os.ReadFile(a.Model)
	mb, _ := os.ReadFile(b.Model)
	if len(ma) == 0 || !bytes.Equal(ma, mb) {
		t.Errorf("the bert.-prefixed checkpoint imports to another model.onnx (%d vs %d bytes)", len(ma), len(mb))
	}
	if strings.Join(a.Unused, ",") != "pooler.dense.bias,pooler.dense.weight" || len(b.Unused) != 3 {
		t.Errorf("unused tensors %v and %v", a.Unused, b.Unused)
	}
	for _, f := range []string{"tokenizer.json", "1_Pooling/config.json", "config.json"} {
		if _, err := os.Stat(filepath.Join(root, "a", "out", f)); err != nil {
			t.Errorf("the import lacks %s: %v", f, err)
		}
	}
	if !hf.IsEncoder(plain) || hf.IsEncoder(filepath.Join("..", "testdata", "hf", "qwen2")) {
		t.Errorf("IsEncoder: a BERT checkpoint %v, a Qwen2 one %v", hf.IsEncoder(plain), hf.IsEncoder(filepath.Join("..", "testdata", "hf", "qwen2")))
	}
}

// What the built encoder would compute differently is refused by name,
// and nothing is written.
func TestImportEncoderRefuses(t *testing.T) {
	cases := map[string]struct {
		config map[string]any
		rename func(string) string
		extra  []safetensors.Tensor
		want   string
	}{
		"tanh GELU":          {config: map[string]any{"hidden_act": "gelu_new"}, want: `hidden_act "gelu_new"`},
		"relative positions": {config: map[string]any{"position_embedding_type": "relative_key"}, want: "position_embedding_type"},
		"an unknown field":   {config: map[string]any{"use_rotary": true}, want: "use_rotary"},
		"another model_type": {config: map[string]any{"model_type": "deberta-v2"}, want: "optimum-cli export onnx --task feature-extraction"},
		"a decoder":          {config: map[string]any{"is_decoder": true}, want: "is_decoder"},
		"wrong sizes":        {config: map[string]any{"hidden_size": 64, "num_attention_heads": 4}, want: "config.json implies"},
		"a missing weight": {rename: func(n string) string {
			if n == "encoder.layer.1.output.dense.weight" {
				return "encoder.layer.1.output.dense.kernel" // as a TF conversion names it
			}
			return n
		}, want: `"encoder.layer.1.output.dense.weight"`},
		"a stray tensor": {extra: []safetensors.Tensor{{Name: "encoder.layer.0.adapter.weight", DType: "F32", Shape: []int64{2}, Data: make([]byte, 8)}},
			want: `"encoder.layer.0.adapter.weight" has no place`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := copyEncoder(t, t.TempDir(), c.rename, c.extra...)
			if c.config != nil {
				raw, _ := os.ReadFile(filepath.Join(dir, "config.json"))
				var cfg map[string]any
				if err := json.Unmarshal(raw, &cfg); err != nil {
					t.Fatal(err)
				}
				for k, v := range c.config {
					cfg[k] = v
				}
				raw, _ = json.Marshal(cfg)
				os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644)
			}
			out := filepath.Join(t.TempDir(), "out")
			_, err := hf.ImportEncoder(dir, out)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error naming %s", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(out, "model.onnx")); err == nil {
				t.Errorf("a refused import wrote %s/model.onnx", out)
			}
		})
	}
}

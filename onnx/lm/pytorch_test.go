package lm

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// pytorchRef is the part of onnx/testdata/pytorch/*/reference.json these tests use.
type pytorchRef struct {
	Batch struct {
		InputIDs      [][]int64 `json:"input_ids"`
		AttentionMask [][]int64 `json:"attention_mask"`
	} `json:"batch"`
	Logits struct {
		Torch [][][]float32 `json:"torch"`
	} `json:"logits"`
	Greedy struct {
		MaxNewTokens int           `json:"max_new_tokens"`
		TorchNewIDs  [][]int64     `json:"torch_new_ids"`
		StepLogits   [][][]float32 `json:"step_logits_torch"`
	} `json:"greedy"`
}

func loadFixture(t *testing.T, name string) (*Model, *pytorchRef, [][]int64) {
	t.Helper()
	dir := filepath.Join("..", "testdata", "pytorch", name)
	b, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref pytorchRef
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatalf("parse %s reference.json: %v", name, err)
	}
	m, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	// The prompts are the unpadded rows; the engine left-pads them again.
	var prompts [][]int64
	for r, row := range ref.Batch.InputIDs {
		var p []int64
		for j, id := range row {
			if ref.Batch.AttentionMask[r][j] == 1 {
				p = append(p, id)
			}
		}
		prompts = append(prompts, p)
	}
	return m, &ref, prompts
}

// forwardDiff runs the fixture's prompts through m and returns the largest
// logit difference from PyTorch's at real (unpadded) positions.
func forwardDiff(t *testing.T, m *Model, ref *pytorchRef, prompts [][]int64) float64 {
	t.Helper()
	lg, pad, err := m.Forward(context.Background(), prompts, 0)
	if err != nil {
		t.Fatal(err)
	}
	T, V := len(ref.Batch.InputIDs[0]), m.Layout.Vocab
	var worst float64
	for r := range prompts {
		for j := pad[r]; j < T; j++ {
			for v := 0; v < V; v++ {
				worst = math.Max(worst, math.Abs(float64(lg[(r*T+j)*V+v]-ref.Logits.Torch[r][j][v])))
			}
		}
	}
	return worst
}

func TestPyTorchFixtures(t *testing.T) {
	for _, name := range []string{"gpt2", "llama"} {
		t.Run(name, func(t *testing.T) {
			m, ref, prompts := loadFixture(t, name)
			if m.Layout.Layers != 2 || m.Layout.Vocab != 96 || !m.Layout.HasLogitsToKeep {
				t.Fatalf("layout %+v", m.Layout)
			}
			ctx := context.Background()

			// 1. The recorded PyTorch logits, at real positions.
			lg, pad, err := m.Forward(ctx, prompts, 0)
			if err != nil {
				t.Fatal(err)
			}
			T, V := len(ref.Batch.InputIDs[0]), m.Layout.Vocab
			var worst float64
			for r := range prompts {
				if pad[r] != T-len(prompts[r]) {
					t.Fatalf("row %d padded by %d", r, pad[r])
				}
				for j := pad[r]; j < T; j++ {
					for v := 0; v < V; v++ {
						worst = math.Max(worst, math.Abs(float64(lg[(r*T+j)*V+v]-ref.Logits.Torch[r][j][v])))
					}
				}
			}
			t.Logf("max |ORT - PyTorch| logits = %.2e", worst)
			if worst > 1e-4 {
				t.Errorf("logits differ from PyTorch by %.3e (> 1e-4)", worst)
			}

			// 2. Greedy continuations, exactly, and each step's logits.
			comps, _, err := m.Generate(ctx, prompts, GenerateOptions{MaxNewTokens: ref.Greedy.MaxNewTokens})
			if err != nil {
				t.Fatal(err)
			}
			for r, c := range comps {
				if !equalIDs(c.Tokens, ref.Greedy.TorchNewIDs[r]) {
					t.Errorf("row %d: greedy %v, PyTorch %v", r, c.Tokens, ref.Greedy.TorchNewIDs[r])
				}
			}
			steps := incremental(t, m, prompts, ref.Greedy.TorchNewIDs, 1<<20)
			worst = 0
			for r, p := range prompts {
				for s := range ref.Greedy.StepLogits[r] {
					got := steps[r][len(p)-1+s]
					for v := range got {
						worst = math.Max(worst, math.Abs(float64(got[v]-ref.Greedy.StepLogits[r][s][v])))
					}
				}
			}
			t.Logf("max |cached step logits - PyTorch| = %.2e", worst)
			if worst > 1e-4 {
				t.Errorf("cached decode step logits differ from PyTorch by %.3e", worst)
			}

			// 3. Cache vs one full forward, at every real position.
			checkCacheMatchesFull(t, m, prompts)

			// 4. Sampled log-probs vs log-softmax of a full forward.
			o := GenerateOptions{MaxNewTokens: 10, NumGenerations: 2, Sampling: Sampling{Temperature: 1.2, TopP: 0.9}, Seed: 5, IgnoreEOS: true}
			samples, _, err := m.Generate(ctx, prompts, o)
			if err != nil {
				t.Fatal(err)
			}
			seqs := make([][]int64, len(samples))
			for i, c := range samples {
				seqs[i] = concat(prompts[c.Prompt], c.Tokens)
			}
			fwd := full(t, m, seqs)
			worst = 0
			for i, c := range samples {
				P := len(prompts[c.Prompt])
				for j, tok := range c.Tokens {
					worst = math.Max(worst, math.Abs(logSoftmaxAt(fwd[i][P-1+j], tok)-float64(c.LogProbs[j])))
				}
			}
			t.Logf("max |sampled log-prob - full forward| = %.2e", worst)
			if worst > 1e-4 {
				t.Errorf("sampled log-probs differ from the full forward by %.3e", worst)
			}
		})
	}
}

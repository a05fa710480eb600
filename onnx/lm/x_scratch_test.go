package lm

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tagpr/tagpr/onnx/ort"
)

func bareLoop(t *testing.T, sess *ort.Session, c Config, T0, N int) time.Duration {
	c = c.Defaults()
	ids := make([]int64, T0)
	pos := make([]int64, T0)
	mask := make([]int64, T0+N)
	for i := range ids {
		ids[i], pos[i] = int64(i+1), int64(i)
	}
	for i := range mask {
		mask[i] = 1
	}
	in := map[string]ort.Value{}
	mk := func(n string, shape []int64, d []int64) { v, _ := ort.NewTensor(shape, d); in[n] = v }
	mk(InputIDs, []int64{1, int64(T0)}, ids)
	mk(PositionIDs, []int64{1, int64(T0)}, pos)
	mk(AttentionMask, []int64{1, int64(T0)}, mask[:T0])
	for l := 0; l < c.Layers; l++ {
		for _, n := range []string{PastKey(l), PastValue(l)} {
			v, _ := ort.NewTensor([]int64{1, int64(c.KVHeads), 0, int64(c.HeadDim)}, []float32{})
			in[n] = v
		}
	}
	var total time.Duration
	var prev *ort.Outputs
	for s := 0; s < N; s++ {
		t0 := time.Now()
		out, err := sess.Run(in, nil)
		d := time.Since(t0)
		if s > 0 {
			total += d
		}
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil {
			prev.Destroy()
		}
		prev = out
		lg, _ := ort.Data[float32](Logits, out.Get(Logits))
		V := c.Vocab
		tok, _ := argmax(lg[len(lg)-V:])
		P := T0 + s
		mk(InputIDs, []int64{1, 1}, []int64{int64(tok)})
		mk(PositionIDs, []int64{1, 1}, []int64{int64(P)})
		mk(AttentionMask, []int64{1, int64(P + 1)}, mask[:P+1])
		for l := 0; l < c.Layers; l++ {
			in[PastKey(l)] = out.Get(PresentKey(l))
			in[PastValue(l)] = out.Get(PresentValue(l))
		}
	}
	prev.Destroy()
	return total / time.Duration(N-1)
}

func TestScratchBare(t *testing.T) {
	for _, c := range []Config{benchConfig()} {
		dir := t.TempDir()
		path, err := WriteModelDir(c, dir, false)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Load(path, LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sess, err := ort.NewSessionFromFile(path, ort.Options{})
		if err != nil {
			t.Fatal(err)
		}
		prompts := benchPrompts(1, 16)
		o := GenerateOptions{MaxNewTokens: 64, IgnoreEOS: true, NoLogProbs: true}
		for rep := 0; rep < 4; rep++ {
			_, st, _ := m.Generate(context.Background(), prompts, o)
			b := bareLoop(t, sess, c, 16, 64)
			fmt.Printf("engine %.3f ms/step (ort %.3f, head %.3f)   bare %.3f ms/step\n", st.Decode.Seconds()*1e3/float64(st.DecodeSteps), st.DecodeORT.Seconds()*1e3/float64(st.DecodeSteps), st.Head.Seconds()*1e3/float64(st.DecodeSteps), b.Seconds()*1e3)
		}
	}
}

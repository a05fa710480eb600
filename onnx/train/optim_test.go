package train

import (
	"math"
	"testing"
)

// refAdamW is the textbook AdamW in float64, for comparison.
func refAdamW(w, g []float64, m, v []float64, step int, lr, b1, b2, eps, wd float64) {
	for j := range w {
		m[j] = b1*m[j] + (1-b1)*g[j]
		v[j] = b2*v[j] + (1-b2)*g[j]*g[j]
		mh := m[j] / (1 - math.Pow(b1, float64(step)))
		vh := v[j] / (1 - math.Pow(b2, float64(step)))
		w[j] = w[j]*(1-lr*wd) - lr*mh/(math.Sqrt(vh)+eps)
	}
}

func TestAdamWMatchesReference(t *testing.T) {
	w := []float32{0.5, -1, 2, 0}
	ref := []float64{0.5, -1, 2, 0}
	rm, rv := make([]float64, 4), make([]float64, 4)
	o := NewAdamW([]int{4}, 0.1)
	for step := 1; step <= 5; step++ {
		g := []float32{0.1 * float32(step), -0.3, 1e-3, 4}
		gd := make([]float64, 4)
		for i := range g {
			gd[i] = float64(g[i])
		}
		if err := o.Update([][]float32{w}, [][]float32{g}, 0.01, nil); err != nil {
			t.Fatal(err)
		}
		refAdamW(ref, gd, rm, rv, step, 0.01, 0.9, 0.999, 1e-8, 0.1)
	}
	for i := range w {
		if d := math.Abs(float64(w[i]) - ref[i]); d > 1e-6 {
			t.Errorf("w[%d] = %v, reference %v", i, w[i], ref[i])
		}
	}
}

func TestAdamWDecayIsDecoupled(t *testing.T) {
	w := []float32{2, 2}
	o := NewAdamW([]int{2}, 0.5)
	// Zero gradient: only the decay acts, and only on params marked to decay.
	if err := o.Update([][]float32{w[:1], w[1:]}, [][]float32{{0}, {0}}, 0.1, []bool{true, false}); err == nil {
		t.Fatal("want an error: optimizer made for 1 param, given 2")
	}
	o = NewAdamW([]int{1, 1}, 0.5)
	if err := o.Update([][]float32{w[:1], w[1:]}, [][]float32{{0}, {0}}, 0.1, []bool{true, false}); err != nil {
		t.Fatal(err)
	}
	if w[0] != float32(2*(1-0.1*0.5)) || w[1] != 2 {
		t.Fatalf("after decay-only step w = %v, want [1.9 2]", w)
	}
}

func TestClipGlobalNorm(t *testing.T) {
	g := [][]float32{{3}, {4}}
	if n := ClipGlobalNorm(g, 1); math.Abs(n-5) > 1e-12 {
		t.Fatalf("norm %v, want 5", n)
	}
	if n := GlobalNorm(g); math.Abs(n-1) > 1e-5 {
		t.Fatalf("norm after clipping %v, want 1", n)
	}
	g = [][]float32{{0.3}, {0.4}}
	ClipGlobalNorm(g, 1)
	if g[0][0] != 0.3 || g[1][0] != 0.4 {
		t.Fatalf("small gradients changed by clipping: %v", g)
	}
}

func TestNonFinite(t *testing.T) {
	if i := NonFinite([][]float32{{1, 2}, {3}}); i != -1 {
		t.Fatalf("finite grads reported at %d", i)
	}
	if i := NonFinite([][]float32{{1, 2}, {float32(math.Inf(1))}}); i != 1 {
		t.Fatalf("Inf in param 1 reported at %d", i)
	}
	if i := NonFinite([][]float32{{float32(math.NaN())}}); i != 0 {
		t.Fatalf("NaN in param 0 reported at %d", i)
	}
}

func TestSchedule(t *testing.T) {
	s := Schedule{Peak: 1, Warmup: 10, Total: 110, Decay: "cosine", MinRatio: 0.1}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		step int
		want float64
	}{{0, 0.1}, {4, 0.5}, {9, 1}, {10, 1}, {60, 0.55}, {110, 0.1}, {500, 0.1}}
	for _, c := range cases {
		if got := s.LR(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("cosine LR(%d) = %v, want %v", c.step, got, c.want)
		}
	}
	l := Schedule{Peak: 2, Total: 100, Decay: "linear"}
	if got := l.LR(50); math.Abs(got-1) > 1e-12 {
		t.Errorf("linear LR(50) = %v, want 1", got)
	}
	if err := (Schedule{Peak: 1, Decay: "exp"}).Validate(); err == nil {
		t.Error("unknown decay accepted")
	}
	if err := (Schedule{Peak: 0}).Validate(); err == nil {
		t.Error("zero learning rate accepted")
	}
}

func TestAccumulator(t *testing.T) {
	a := NewAccumulator([]int{2})
	a.Add([][]float32{{1, 2}})
	a.Add([][]float32{{3, 6}})
	m := a.Mean()
	if m[0][0] != 2 || m[0][1] != 4 {
		t.Fatalf("mean %v, want [2 4]", m)
	}
	a.Reset()
	if a.Sum[0][0] != 0 || a.Count != 0 {
		t.Fatal("reset left state")
	}
	if err := a.Add([][]float32{{1}}); err == nil {
		t.Fatal("wrong-size gradient accepted")
	}
}

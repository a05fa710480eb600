package probe

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/tagpr/tagpr/onnx/train"
)

// Folder is one probe run read back.
type Folder struct {
	Dir     string
	Summary Summary
	Tensors map[string]train.STensor
}

// Read reads a probe folder written by Run.
func Read(dir string) (*Folder, error) {
	b, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		return nil, fmt.Errorf("probe folder %s: %w", dir, err)
	}
	f := &Folder{Dir: dir}
	if err := json.Unmarshal(b, &f.Summary); err != nil {
		return nil, fmt.Errorf("probe folder %s: %s: %w", dir, SummaryFile, err)
	}
	if f.Tensors, _, err = train.ReadSafetensors(filepath.Join(dir, TensorsFile)); err != nil {
		return nil, err
	}
	return f, nil
}

// Tolerances bound the differences Compare accepts.
type Tolerances struct {
	Logits float64 // max |a−b| over the logits (fp32: 1e-3)
	Grads  float64 // per gradient: max |a−b| over the sampled elements / max |a| (1e-3)
	Loss   float64 // |a−b| / |a| (1e-4)
	// Half: float16 logits' max |Δ| from float32 / the largest |logit|
	// (0: 0.02).
	Half float64
}

// Comparison is Compare's verdict; Failures is empty when every check passed.
type Comparison struct {
	LogitsMaxAbs   float64
	GreedySame     bool
	GreedyFirstOff string // where the ids first differ
	LossRel        float64
	GradWorst      float64
	GradWorstName  string
	Failures       []string
	Speed          []string // one line per throughput figure: a, b and b/a
}

// Compare checks run b (e.g. CUDA) against run a (e.g. CPU) of the same
// model and workload.
func Compare(a, b *Folder, tol Tolerances) (*Comparison, error) {
	oa, ob := a.Summary.Options, b.Summary.Options
	oa.Log, ob.Log = nil, nil
	if !reflect.DeepEqual(oa, ob) || a.Summary.Vocab != b.Summary.Vocab {
		return nil, fmt.Errorf("%s and %s ran different workloads (options or vocab differ); probe both with the same flags", a.Dir, b.Dir)
	}
	c := &Comparison{GreedySame: true}
	fail := func(format string, args ...any) { c.Failures = append(c.Failures, fmt.Sprintf(format, args...)) }

	la, lb := a.Tensors[logitsName].F32, b.Tensors[logitsName].F32
	if len(la) == 0 || len(la) != len(lb) {
		return nil, fmt.Errorf("logits: %d values in %s, %d in %s", len(la), a.Dir, len(lb), b.Dir)
	}
	for i := range la {
		d := math.Abs(float64(la[i]) - float64(lb[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		c.LogitsMaxAbs = math.Max(c.LogitsMaxAbs, d)
	}
	if c.LogitsMaxAbs > tol.Logits {
		fail("logits differ by up to %.3g (tolerance %.3g)", c.LogitsMaxAbs, tol.Logits)
	}

	for r := range a.Summary.GreedyIDs {
		ra, rb := a.Summary.GreedyIDs[r], []int64(nil)
		if r < len(b.Summary.GreedyIDs) {
			rb = b.Summary.GreedyIDs[r]
		}
		for t := range ra {
			if t >= len(rb) || ra[t] != rb[t] {
				c.GreedySame = false
				c.GreedyFirstOff = fmt.Sprintf("row %d, token %d", r, t)
				break
			}
		}
		if !c.GreedySame {
			break
		}
	}
	if !c.GreedySame {
		fail("greedy ids differ first at %s", c.GreedyFirstOff)
	}

	if len(a.Summary.GradNorms) > 0 {
		c.LossRel = math.Abs(a.Summary.Loss-b.Summary.Loss) / math.Max(math.Abs(a.Summary.Loss), 1e-12)
		if !(c.LossRel <= tol.Loss) {
			fail("training loss %.7g vs %.7g (relative %.3g, tolerance %.3g)", a.Summary.Loss, b.Summary.Loss, c.LossRel, tol.Loss)
		}
		var names []string
		for k := range a.Tensors {
			if strings.HasPrefix(k, gradPrefix) {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		for _, k := range names {
			ga, gb := a.Tensors[k].F32, b.Tensors[k].F32
			if len(ga) != len(gb) {
				return nil, fmt.Errorf("%s: %d sampled values in %s, %d in %s", k, len(ga), a.Dir, len(gb), b.Dir)
			}
			var scale, diff float64
			for i := range ga {
				scale = math.Max(scale, math.Abs(float64(ga[i])))
				d := math.Abs(float64(ga[i]) - float64(gb[i]))
				if math.IsNaN(d) {
					d = math.Inf(1)
				}
				diff = math.Max(diff, d)
			}
			rel := diff / math.Max(scale, 1e-12)
			if rel > c.GradWorst || math.IsInf(rel, 0) {
				c.GradWorst, c.GradWorstName = rel, strings.TrimPrefix(k, gradPrefix)
			}
		}
		if c.GradWorst > tol.Grads {
			fail("gradient of %s differs by %.3g of its largest element (tolerance %.3g)", c.GradWorstName, c.GradWorst, tol.Grads)
		}
	}

	pa, pb := a.Summary.Provider, b.Summary.Provider
	for i, ga := range a.Summary.Generation {
		if i < len(b.Summary.Generation) {
			gb := b.Summary.Generation[i]
			c.Speed = append(c.Speed, fmt.Sprintf("generation batch %-3d tokens/s  %s %10.1f  %s %10.1f  ×%.2f", ga.Batch, pa, ga.TokensPerSec, pb, gb.TokensPerSec, gb.TokensPerSec/ga.TokensPerSec))
		}
	}
	if a.Summary.TrainTokPS > 0 && b.Summary.TrainTokPS > 0 {
		c.Speed = append(c.Speed, fmt.Sprintf("training (%d×%d)  tokens/s  %s %10.1f  %s %10.1f  ×%.2f", oa.TrainBatch, oa.SeqLen, pa, a.Summary.TrainTokPS, pb, b.Summary.TrainTokPS, b.Summary.TrainTokPS/a.Summary.TrainTokPS))
	}
	for _, f := range []*Folder{a, b} {
		for _, msg := range deviceFailures(f, tol) {
			fail("%s", msg)
		}
	}
	return c, nil
}

// Report is the comparison in a few lines.
func (c *Comparison) Report(a, b *Folder) string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s (%s) vs %s (%s), %d params, vocab %d\n", a.Dir, a.Summary.Provider, b.Dir, b.Summary.Provider, a.Summary.Params, a.Summary.Vocab)
	fmt.Fprintf(&s, "  logits max |Δ| %.3g   greedy ids identical: %v   loss rel Δ %.3g   worst gradient rel Δ %.3g (%s)\n",
		c.LogitsMaxAbs, c.GreedySame, c.LossRel, c.GradWorst, c.GradWorstName)
	for _, l := range c.Speed {
		s.WriteString("  " + l + "\n")
	}
	s.WriteString(deviceReport(a) + deviceReport(b))
	if len(c.Failures) == 0 {
		s.WriteString("  PARITY OK\n")
	}
	for _, f := range c.Failures {
		s.WriteString("  FAIL " + f + "\n")
	}
	return s.String()
}

package train

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// trlFixture is testdata/trl_grpo_loss.json, written by
// scripts/grpo/trl_parity.py from TRL's own GRPOTrainer._compute_loss.
type trlFixture struct {
	Versions        map[string]string `json:"versions"`
	B, P, C, V      int64
	Epsilon         float64              `json:"epsilon"`
	Logits          [][][]float64        `json:"logits"`
	InputIDs        [][]int64            `json:"input_ids"`
	CompletionMask  [][]float64          `json:"completion_mask"`
	CurrentLogprobs [][]float64          `json:"current_logprobs"`
	OldShift        [][]float64          `json:"old_shift"`
	RefShift        [][]float64          `json:"ref_shift"`
	Advantages      map[string][]float64 `json:"advantages"`
	Configs         []trlConfig          `json:"configs"`
}

type trlConfig struct {
	Name                string             `json:"name"`
	LossType            string             `json:"loss_type"`
	Beta                float64            `json:"beta"`
	EpsilonHigh         float64            `json:"epsilon_high"`
	ScaleRewards        string             `json:"scale_rewards"`
	OffPolicy           bool               `json:"off_policy"`
	UseBiasCorrectionKL bool               `json:"use_bias_correction_kl"`
	Loss                float64            `json:"loss"`
	Metrics             map[string]float64 `json:"metrics"`
}

func (c trlConfig) String() string {
	return fmt.Sprintf("%s: %s β=%g ε_high=%g scale_rewards=%s off_policy=%v bias_correction_kl=%v",
		c.Name, c.LossType, c.Beta, c.EpsilonHigh, c.ScaleRewards, c.OffPolicy, c.UseBiasCorrectionKL)
}

// TestPolicyLossMatchesTRL: AddPolicyLoss's loss, its gradient with respect
// to the logits, and the KL and clip metrics equal TRL 1.16's
// _compute_loss on one batch, over 126 configurations (loss types × β ×
// ε_high × scale_rewards × on/off-policy, with and without the KL bias
// correction). In float64 they agree to rounding; in float32, the precision
// training runs in, to 1.3e-7 (loss) and 2.5e-6 (gradient) relative.
func TestPolicyLossMatchesTRL(t *testing.T) {
	var fx trlFixture
	raw, err := os.ReadFile("testdata/trl_grpo_loss.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	grads, _, err := ReadSafetensors("testdata/trl_grpo_loss.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if len(fx.Configs) != 126 {
		t.Fatalf("fixture has %d configurations, want 126", len(fx.Configs))
	}
	t.Logf("reference: TRL %s, torch %s", fx.Versions["trl"], fx.Versions["torch"])
	for _, dt := range []ir.DataType{ir.Double, ir.Float} {
		worstLoss, worstGrad, worstMetric := 0.0, 0.0, 0.0
		graphs := map[string]*trlGraph{} // scale_rewards and the policy are inputs: one graph serves several configs
		defer func() {
			for _, g := range graphs {
				g.close()
			}
		}()
		for _, c := range fx.Configs {
			key := fmt.Sprint(c.LossType, c.Beta, c.EpsilonHigh, c.UseBiasCorrectionKL)
			if graphs[key] == nil {
				graphs[key] = newTRLGraph(t, &fx, c, dt)
			}
			got := graphs[key].run(t, &fx, c)
			want := grads[c.Name].F64
			if len(want) != len(got.grad) {
				t.Fatalf("%v: %d gradient values, fixture %d", c, len(got.grad), len(want))
			}
			lossErr := math.Abs(got.loss-c.Loss) / math.Max(math.Abs(c.Loss), 1)
			gradErr, scale := 0.0, 0.0
			for i := range want {
				gradErr = math.Max(gradErr, math.Abs(got.grad[i]-want[i]))
				scale = math.Max(scale, math.Abs(want[i]))
			}
			gradErr /= scale
			for k, w := range c.Metrics {
				g, ok := got.metrics[k]
				if !ok {
					t.Fatalf("%v: no %s metric", c, k)
				}
				worstMetric = math.Max(worstMetric, math.Abs(g-w)/math.Max(math.Abs(w), 1))
			}
			if c.Beta == 0 {
				if _, ok := got.metrics["kl"]; ok {
					t.Fatalf("%v: a kl metric without a KL term", c)
				}
			}
			worstLoss, worstGrad = math.Max(worstLoss, lossErr), math.Max(worstGrad, gradErr)
			tolLoss, tolGrad := 1e-12, 1e-11
			if dt == ir.Float {
				tolLoss, tolGrad = 1.3e-7, 2.5e-6
			}
			if lossErr > tolLoss || gradErr > tolGrad {
				t.Errorf("%s %v: loss %.17g, TRL %.17g (error %.3g); gradient error %.3g", dt, c, got.loss, c.Loss, lossErr, gradErr)
			}
		}
		// TRL logs the clip ratios as float32 means.
		if worstMetric > 1e-7 {
			t.Errorf("%s: a KL or clip metric is %.3g off TRL's", dt, worstMetric)
		}
		t.Logf("%s graph: worst loss error %.3g, gradient %.3g (relative), metrics %.3g", dt, worstLoss, worstGrad, worstMetric)
	}
}

type trlResult struct {
	loss    float64
	grad    []float64
	metrics map[string]float64
}

// trlGraph is the policy loss on a "model" whose logits are a weight
// holding the fixture's logits, in TRL's layout (prompt then completion,
// [B, P+C]), with element type dt.
type trlGraph struct {
	*graphRunner
	loss string
	keep []string
}

func newTRLGraph(t *testing.T, fx *trlFixture, c trlConfig, dt ir.DataType) *trlGraph {
	t.Helper()
	B, T := fx.B, fx.P+fx.C
	m := trlModel(fx, dt)
	loss, err := AddPolicyLoss(m, PolicyLoss{Epsilon: fx.Epsilon, EpsilonHigh: c.EpsilonHigh, Beta: c.Beta,
		BiasCorrectionKL: c.UseBiasCorrectionKL, LossType: c.LossType, MaxCompletionLength: int(fx.C)})
	if err != nil {
		t.Fatal(err)
	}
	keep := []string{TokenLogprobsOutput, ClipLowOutput, ClipHighOutput, ClipRegionOutput}
	shapes := map[string][]int64{"input_ids": {B, T}, LossMaskInput: {B, T}, AdvantagesInput: {B}, OldLogprobsInput: {B, T}}
	if c.Beta > 0 {
		keep = append(keep, PolicyKLOutput)
		shapes[RefLogprobsInput] = []int64{B, T}
	}
	sp, err := Specialize(m, shapes)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := Differentiate(sp, loss, []string{"logits_weight"}, keep)
	if err != nil {
		t.Fatal(err)
	}
	return &trlGraph{graphRunner: newGraphRunner(t, tg, dt), loss: loss, keep: keep}
}

// run feeds configuration c's inputs and returns what TRL reports.
func (g *trlGraph) run(t *testing.T, fx *trlFixture, c trlConfig) trlResult {
	t.Helper()
	B, T := int(fx.B), int(fx.P+fx.C)
	ids := make([]int64, 0, B*T)
	for _, r := range fx.InputIDs {
		ids = append(ids, r...)
	}
	// Entry t of a [B,T] input is about token t: the completion's token c
	// is t = P+c.
	atCompletion := func(f func(b, c int) float64) []float64 {
		out := make([]float64, B*T)
		for b := 0; b < B; b++ {
			for c := 0; c < int(fx.C); c++ {
				out[b*T+int(fx.P)+c] = f(b, c)
			}
		}
		return out
	}
	feeds := map[string][]float64{
		LossMaskInput:   atCompletion(func(b, c int) float64 { return fx.CompletionMask[b][c] }),
		AdvantagesInput: fx.Advantages[c.ScaleRewards],
		RefLogprobsInput: atCompletion(func(b, c int) float64 {
			return fx.CurrentLogprobs[b][c] + fx.RefShift[b][c]
		}),
	}
	// On-policy, TRL's old log-probs are the current ones themselves (a
	// detached copy): the graph's own, so that the ratio is exactly 1.
	old := atCompletion(func(b, c int) float64 { return fx.CurrentLogprobs[b][c] + fx.OldShift[b][c] })
	if !c.OffPolicy {
		cur := g.graphRunner.run(t, ids, feeds, make([]float64, B*T), []string{TokenLogprobsOutput})[TokenLogprobsOutput]
		old = make([]float64, B*T)
		for b := 0; b < B; b++ {
			copy(old[b*T+1:(b+1)*T], cur[b*(T-1):(b+1)*(T-1)])
		}
	}
	grad := g.tg.Grads["logits_weight"]
	out := g.graphRunner.run(t, ids, feeds, old, append([]string{g.loss, grad}, g.keep...))
	r := trlResult{loss: out[g.loss][0], grad: out[grad], metrics: map[string]float64{
		"clip_ratio/low_mean": out[ClipLowOutput][0], "clip_ratio/high_mean": out[ClipHighOutput][0],
		"clip_ratio/region_mean": out[ClipRegionOutput][0]}}
	if c.Beta > 0 {
		r.metrics["kl"] = out[PolicyKLOutput][0]
	}
	return r
}

// trlModel is logits = Identity(logits_weight), the weight holding the
// fixture's logits, with an input_ids input for the loss to read.
func trlModel(fx *trlFixture, dt ir.DataType) *onnxpb.ModelProto {
	B, T, V := fx.B, fx.P+fx.C, fx.V
	var flat []float64
	for _, row := range fx.Logits {
		for _, pos := range row {
			flat = append(flat, pos...)
		}
	}
	g := ir.NewGraph("trl_parity")
	g.Input("input_ids", ir.Int64, B, T)
	w := ir.Tensor("", []int64{B, T, V}, flat)
	if dt == ir.Float {
		f := make([]float32, len(flat))
		for i, v := range flat {
			f[i] = float32(v)
		}
		w = ir.Tensor("", []int64{B, T, V}, f)
	}
	g.Initializer("logits_weight", w)
	g.Node("Identity", []string{"logits_weight"}, []string{"logits"})
	g.Output("logits", dt, B, T, V)
	return ir.MustModel(g, 18)
}

// graphRunner runs a training graph in float32 or float64 with its weight
// at its initial value.
type graphRunner struct {
	tg     *TrainingGraph
	dt     ir.DataType
	sess   *ort.Session
	weight ort.Value
}

func newGraphRunner(t *testing.T, tg *TrainingGraph, dt ir.DataType) *graphRunner {
	t.Helper()
	b, err := ir.Marshal(tg.Model)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewSession(b, "trl parity", ort.Options{OptLevel: "basic", IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := &graphRunner{tg: tg, dt: dt, sess: s}
	init := tg.Initial["logits_weight"]
	if dt == ir.Double {
		d, _ := ir.Float64s(init)
		r.weight, err = ort.NewTensor(init.GetDims(), d)
	} else {
		d, _ := ir.Float32s(init)
		r.weight, err = ort.NewTensor(init.GetDims(), d)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *graphRunner) close() {
	r.weight.Destroy()
	r.sess.Destroy()
}

// run feeds ids, the float inputs (as dt) and old log-probs, and returns the
// named outputs as float64.
func (r *graphRunner) run(t *testing.T, ids []int64, floats map[string][]float64, old []float64, outputs []string) map[string][]float64 {
	t.Helper()
	shapeOf := func(name string) []int64 {
		for _, vi := range r.tg.Model.Graph.Input {
			if vi.GetName() == name {
				_, dims, _, _ := ir.ShapeOf(vi)
				return dims
			}
		}
		return nil
	}
	in := map[string]ort.Value{"logits_weight": r.weight}
	add := func(name string, v ort.Value, err error) {
		if err != nil {
			t.Fatal(err)
		}
		in[name] = v
	}
	idv, err := ort.NewTensor(shapeOf("input_ids"), ids)
	add("input_ids", idv, err)
	all := map[string][]float64{OldLogprobsInput: old}
	for k, f := range floats {
		all[k] = f
	}
	for name, f := range all {
		shape := shapeOf(name)
		if shape == nil {
			continue // the ref input of a graph without a KL term
		}
		if r.dt == ir.Double {
			v, err := ort.NewTensor(shape, f)
			add(name, v, err)
			continue
		}
		f32 := make([]float32, len(f))
		for i, x := range f {
			f32[i] = float32(x)
		}
		v, err := ort.NewTensor(shape, f32)
		add(name, v, err)
	}
	defer func() {
		for k, v := range in {
			if k != "logits_weight" {
				v.Destroy()
			}
		}
	}()
	res, err := r.sess.Run(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Destroy()
	out := map[string][]float64{}
	for _, o := range outputs {
		if r.dt == ir.Double {
			d, err := ort.Data[float64](o, res.Get(o))
			if err != nil {
				t.Fatal(err)
			}
			out[o] = append([]float64(nil), d...)
			continue
		}
		d, err := ort.Data[float32](o, res.Get(o))
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range d {
			out[o] = append(out[o], float64(x))
		}
	}
	return out
}

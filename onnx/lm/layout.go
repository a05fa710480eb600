package lm

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/tagpr/tagpr/onnx/ort"
)

// IO names of the Optimum text-generation-with-past layout.
const (
	InputIDs      = "input_ids"
	AttentionMask = "attention_mask"
	PositionIDs   = "position_ids"
	// UseCacheBranch is the switch of Optimum's merged decoders
	// (decoder_model_merged.onnx): false on the first step, true after.
	UseCacheBranch = "use_cache_branch"
	Logits         = "logits"
)

// PastKey and friends name the per-layer cache inputs and outputs.
func PastKey(layer int) string      { return "past_key_values." + strconv.Itoa(layer) + ".key" }
func PastValue(layer int) string    { return "past_key_values." + strconv.Itoa(layer) + ".value" }
func PresentKey(layer int) string   { return "present." + strconv.Itoa(layer) + ".key" }
func PresentValue(layer int) string { return "present." + strconv.Itoa(layer) + ".value" }

// Layout is what a model's declared inputs and outputs say about it.
type Layout struct {
	Layers         int
	KVHeads        int // 0 when the model leaves it symbolic and no config says
	HeadDim        int // likewise
	Vocab          int // likewise
	HasPositionIDs bool
	// HasCacheBranch: the model is an Optimum merged decoder with a
	// use_cache_branch bool [1] input, which generation feeds.
	HasCacheBranch bool
	// HasLogitsToKeep: the graph takes logits_to_keep int64 [1] (see
	// keep.go), which generation feeds.
	HasLogitsToKeep bool
	// HasDecodeHead: the graph computes the decode head (headgraph.go).
	HasDecodeHead bool
	// HasBlockSums: its head also sums the probabilities in blocks
	// (HeadBlockSums).
	HasBlockSums bool
	// Float is the element type of logits and the cache: "float32" or "float64".
	Float string
	// Extra lists inputs outside the layout (for example weights fed as
	// inputs); generation needs every one of them bound.
	Extra []string
}

// CheckOptions are extra demands on a model beyond its layout.
type CheckOptions struct {
	// TokenizerVocab, when > 0, is the size of the tokenizer the model will be
	// used with; a model with fewer logits is refused.
	TokenizerVocab int
	// Config, when non-nil, fills in sizes the graph leaves symbolic and is
	// cross-checked against the ones it fixes.
	Config *HFConfig
}

// ReadLayout checks declared inputs and outputs against the causal-LM layout
// and returns what they say. label names the model in errors. Every refusal
// names the input or output and what was expected.
func ReadLayout(label string, inputs, outputs []ort.IOInfo, opts CheckOptions) (Layout, error) {
	var lay Layout
	fail := func(format string, a ...any) (Layout, error) {
		return Layout{}, fmt.Errorf("model %s: "+format, append([]any{label}, a...)...)
	}
	ins, outs := byName(inputs), byName(outputs)

	for _, name := range []string{InputIDs, AttentionMask} {
		in, ok := ins[name]
		if !ok {
			return fail("missing input %q (want int64 [batch, seq]); inputs are: %s", name, ioNames(inputs))
		}
		if err := want(in, "input", ortgo.TensorElementDataTypeInt64, 2); err != nil {
			return fail("%v", err)
		}
	}
	if in, ok := ins[PositionIDs]; ok {
		if err := want(in, "input", ortgo.TensorElementDataTypeInt64, 2); err != nil {
			return fail("%v", err)
		}
		lay.HasPositionIDs = true
	}
	if in, ok := ins[UseCacheBranch]; ok {
		if err := want(in, "input", ortgo.TensorElementDataTypeBool, 1); err != nil {
			return fail("%v", err)
		}
		lay.HasCacheBranch = true
	}
	if in, ok := ins[LogitsToKeep]; ok {
		if err := want(in, "input", ortgo.TensorElementDataTypeInt64, 1); err != nil {
			return fail("%v", err)
		}
		lay.HasLogitsToKeep = true
	}
	lg, ok := outs[Logits]
	if !ok {
		return fail("missing output %q (want float [batch, seq, vocab]); outputs are: %s", Logits, ioNames(outputs))
	}
	var float ortgo.TensorElementDataType
	switch lg.DataType {
	case ortgo.TensorElementDataTypeFloat:
		lay.Float, float = "float32", lg.DataType
	case ortgo.TensorElementDataTypeDouble:
		lay.Float, float = "float64", lg.DataType
	default:
		return fail("output %q has element type %s, want float32 (or float64)", Logits, typeName(lg.DataType))
	}
	if err := want(lg, "output", float, 3); err != nil {
		return fail("%v", err)
	}
	if v := lg.Dimensions[2]; v > 0 {
		lay.Vocab = int(v)
	}

	// Layers: count past_key_values.{i}.key from 0 upwards; every layer
	// needs all four cache tensors with the logits' element type.
	for ; ; lay.Layers++ {
		if _, ok := ins[PastKey(lay.Layers)]; !ok {
			break
		}
	}
	if lay.Layers == 0 {
		return fail("missing input %q (want %s [batch, kv_heads, past, head_dim]); a model without a KV cache cannot generate efficiently — export it with --task text-generation-with-past",
			PastKey(0), lay.Float)
	}
	for i := 0; i < lay.Layers; i++ {
		for _, c := range []struct {
			name, kind string
			set        map[string]ort.IOInfo
		}{{PastKey(i), "input", ins}, {PastValue(i), "input", ins}, {PresentKey(i), "output", outs}, {PresentValue(i), "output", outs}} {
			v, ok := c.set[c.name]
			if !ok {
				return fail("missing %s %q (want %s [batch, kv_heads, seq, head_dim]; the model has %d layers by its past_key_values inputs)", c.kind, c.name, lay.Float, lay.Layers)
			}
			if err := want(v, c.kind, float, 4); err != nil {
				return fail("%v", err)
			}
			if h := int(v.Dimensions[1]); h > 0 {
				if lay.KVHeads != 0 && lay.KVHeads != h {
					return fail("%s %q has %d kv heads (dim 1), other cache tensors have %d", c.kind, c.name, h, lay.KVHeads)
				}
				lay.KVHeads = h
			}
			if d := int(v.Dimensions[3]); d > 0 {
				if lay.HeadDim != 0 && lay.HeadDim != d {
					return fail("%s %q has head_dim %d (dim 3), other cache tensors have %d", c.kind, c.name, d, lay.HeadDim)
				}
				lay.HeadDim = d
			}
		}
	}
	if _, ok := outs[PresentKey(lay.Layers)]; ok {
		return fail("output %q has no matching input %q", PresentKey(lay.Layers), PastKey(lay.Layers))
	}

	if _, ok := ins[HeadSample]; ok {
		for _, n := range headInputs {
			if _, ok := ins[n]; !ok {
				return fail("input %q without %q: the decode head tagpr adds has both", HeadSample, n)
			}
		}
		for _, n := range headOutputs {
			if _, ok := outs[n]; !ok {
				return fail("input %q without output %q: the decode head tagpr adds has both", HeadSample, n)
			}
		}
		_, lay.HasBlockSums = outs[HeadBlockSums]
		if _, sums := outs[HeadProbsSum]; sums == lay.HasBlockSums {
			return fail("input %q needs exactly one of the outputs %q and %q: the decode head tagpr adds has one", HeadSample, HeadBlockSums, HeadProbsSum)
		}
		lay.HasDecodeHead = true
	}
	known := map[string]bool{InputIDs: true, AttentionMask: true, PositionIDs: true, UseCacheBranch: true, LogitsToKeep: true}
	for _, n := range headInputs {
		known[n] = true
	}
	for i := 0; i < lay.Layers; i++ {
		known[PastKey(i)], known[PastValue(i)] = true, true
	}
	for _, in := range inputs {
		if !known[in.Name] {
			lay.Extra = append(lay.Extra, in.Name)
		}
	}

	if c := opts.Config; c != nil {
		if err := lay.reconcile(c); err != nil {
			return fail("%v", err)
		}
	}
	if opts.TokenizerVocab > 0 && lay.Vocab > 0 && lay.Vocab < opts.TokenizerVocab {
		return fail("output %q has vocab %d, smaller than the tokenizer's %d tokens (want vocab >= %d)", Logits, lay.Vocab, opts.TokenizerVocab, opts.TokenizerVocab)
	}
	return lay, nil
}

// reconcile fills symbolic sizes from config.json and refuses contradictions.
func (l *Layout) reconcile(c *HFConfig) error {
	check := func(what string, graph *int, cfg int) error {
		if cfg <= 0 {
			return nil
		}
		if *graph == 0 {
			*graph = cfg
			return nil
		}
		if *graph != cfg {
			return fmt.Errorf("graph has %s %d, config.json says %d", what, *graph, cfg)
		}
		return nil
	}
	if err := check("vocab", &l.Vocab, c.VocabSize); err != nil {
		return err
	}
	if err := check("kv heads", &l.KVHeads, c.KVHeads()); err != nil {
		return err
	}
	if err := check("head_dim", &l.HeadDim, c.HeadDimension()); err != nil {
		return err
	}
	if n := c.Layers(); n > 0 && n != l.Layers {
		return fmt.Errorf("graph has %d layers (past_key_values inputs), config.json says %d", l.Layers, n)
	}
	return nil
}

// complete says whether every size generation needs is known.
func (l Layout) complete(label string) error {
	var miss []string
	if l.KVHeads == 0 {
		miss = append(miss, "kv heads (dim 1 of "+PastKey(0)+")")
	}
	if l.HeadDim == 0 {
		miss = append(miss, "head_dim (dim 3 of "+PastKey(0)+")")
	}
	if len(miss) > 0 {
		return fmt.Errorf("model %s: %s symbolic in the graph and no config.json beside it says; add a config.json (num_key_value_heads, head_dim)", label, strings.Join(miss, " and "))
	}
	return nil
}

func want(v ort.IOInfo, kind string, dt ortgo.TensorElementDataType, rank int) error {
	if v.OrtValueType != ortgo.ONNXTypeTensor {
		return fmt.Errorf("%s %q is a %s, want a tensor", kind, v.Name, v.OrtValueType)
	}
	if v.DataType != dt {
		return fmt.Errorf("%s %q has element type %s, want %s", kind, v.Name, typeName(v.DataType), typeName(dt))
	}
	if len(v.Dimensions) != rank {
		return fmt.Errorf("%s %q has rank %d %v, want rank %d", kind, v.Name, len(v.Dimensions), v.Dimensions, rank)
	}
	return nil
}

func typeName(t ortgo.TensorElementDataType) string {
	switch t {
	case ortgo.TensorElementDataTypeFloat:
		return "float32"
	case ortgo.TensorElementDataTypeDouble:
		return "float64"
	case ortgo.TensorElementDataTypeInt64:
		return "int64"
	case ortgo.TensorElementDataTypeInt32:
		return "int32"
	case ortgo.TensorElementDataTypeFloat16:
		return "float16"
	case ortgo.TensorElementDataTypeBFloat16:
		return "bfloat16"
	case ortgo.TensorElementDataTypeBool:
		return "bool"
	}
	return t.String()
}

func byName(infos []ort.IOInfo) map[string]ort.IOInfo {
	m := make(map[string]ort.IOInfo, len(infos))
	for _, v := range infos {
		m[v.Name] = v
	}
	return m
}

func ioNames(infos []ort.IOInfo) string {
	n := make([]string, len(infos))
	for i, v := range infos {
		n[i] = v.Name
	}
	sort.Strings(n)
	if len(n) > 12 {
		n = append(n[:12], fmt.Sprintf("… (%d in all)", len(infos)))
	}
	return strings.Join(n, ", ")
}

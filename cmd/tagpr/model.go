package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/onnx/lm"
)

func init() {
	modelCmd := &cobra.Command{Use: "model", Short: "Causal LMs: inspect an ONNX model, build a built-in one, generate"}
	modelCmd.AddCommand(modelInfoCmd(), modelInitCmd(), modelGenerateCmd(), modelProbeCmd(), modelProbeCompareCmd())
	rootCmd.AddCommand(modelCmd)
}

func modelInfoCmd() *cobra.Command {
	var tokVocab int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info PATH",
		Short: "Print a model's inputs, outputs, layers/heads/vocab, parameter count, opset and IR version",
		Long: "PATH is an .onnx file or a folder holding model.onnx or onnx/model.onnx; config.json beside it is read too.\n" +
			"Exits non-zero when the model does not fit the causal-LM layout (the report says which input/output and what was expected).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := lm.Inspect(args[0], lm.CheckOptions{TokenizerVocab: tokVocab})
			if err != nil {
				return err
			}
			if asJSON {
				b, err := json.MarshalIndent(info, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
			} else {
				fmt.Fprint(cmd.OutOrStdout(), info.Summary())
			}
			if info.Layout == nil {
				return errors.New(info.LayoutError)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&tokVocab, "tokenizer-vocab", 0, "refuse a model whose vocab is smaller than this tokenizer vocab size")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func modelInitCmd() *cobra.Command {
	var c lm.Config
	var arch, out string
	var tie, tjsLayout, force bool
	var pad int64
	cmd := &cobra.Command{
		Use:   "init --arch llama|gpt2 --out DIR",
		Short: "Build a built-in causal LM (seeded random weights) with config.json and generation_config.json",
		Example: "  tagpr model init --arch llama --layers 2 --d-model 128 --heads 4 --kv-heads 2 --vocab 512 --out models/tiny\n" +
			"  tagpr model init --arch gpt2 --layers 4 --d-model 256 --heads 8 --vocab 8192 --out models/gpt2-small",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out DIR is required")
			}
			c.Arch = lm.Arch(arch)
			if cmd.Flags().Changed("tie-embeddings") {
				c.TieEmbeddings = &tie
			}
			if cmd.Flags().Changed("pad-token-id") {
				c.Pad = &pad
			}
			full := c.Defaults()
			if err := full.Validate(); err != nil {
				return err
			}
			target := filepath.Join(out, "model.onnx")
			if tjsLayout {
				target = filepath.Join(out, "onnx", "model.onnx")
			}
			if err := prepareOutput(target, force); err != nil {
				return err
			}
			path, err := lm.WriteModelDir(c, out, tjsLayout)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s, %d layers, d_model %d, %d heads / %d kv, vocab %d, %d parameters, %s) with config.json and generation_config.json\n",
				path, full.Arch, full.Layers, full.DModel, full.Heads, full.KVHeads, full.Vocab, full.Params(), full.DType)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&arch, "arch", "llama", "llama (RMSNorm, SwiGLU, rotary, grouped KV) or gpt2 (LayerNorm, GELU, learned positions)")
	f.StringVar(&out, "out", "", "output folder")
	f.IntVar(&c.Layers, "layers", 2, "decoder layers")
	f.IntVar(&c.DModel, "d-model", 128, "model width")
	f.IntVar(&c.Heads, "heads", 4, "query heads")
	f.IntVar(&c.KVHeads, "kv-heads", 0, "key/value heads (llama; default: heads)")
	f.IntVar(&c.HeadDim, "head-dim", 0, "head width (default: d-model / heads)")
	f.IntVar(&c.FFN, "ffn", 0, "MLP width (default: 4·d-model for gpt2, ≈8/3·d-model for llama)")
	f.IntVar(&c.Vocab, "vocab", 512, "vocabulary size (at least the tokenizer's)")
	f.IntVar(&c.MaxPositions, "max-positions", 1024, "longest sequence (prompt + completion)")
	f.Float64Var(&c.RopeTheta, "rope-theta", 10000, "rotary base (llama)")
	f.Float64Var(&c.NormEps, "norm-eps", 0, "normalization epsilon (default 1e-5 gpt2, 1e-6 llama)")
	f.BoolVar(&tie, "tie-embeddings", false, "share the token embedding with the output projection (default: gpt2 yes, llama no)")
	f.BoolVar(&c.AttentionBias, "attention-bias", false, "q/k/v biases on a llama (Qwen2 style)")
	f.StringVar(&c.DType, "dtype", "float32", "float32, or float64 for gradient checks")
	f.Uint64Var(&c.Seed, "seed", 0, "weight initialization seed")
	f.Float64Var(&c.InitStd, "init-std", 0.02, "standard deviation of the initial weights")
	f.Int64Var(&c.BOS, "bos-token-id", 0, "beginning-of-sequence id")
	f.Int64Var(&c.EOS, "eos-token-id", 0, "end-of-sequence id")
	f.Int64Var(&pad, "pad-token-id", 0, "padding id (default: none written; generation pads with EOS)")
	f.BoolVar(&tjsLayout, "transformers-layout", false, "write onnx/model.onnx (the transformers.js folder layout)")
	f.BoolVar(&force, "force", false, "overwrite an existing model")
	return cmd
}

func modelGenerateCmd() *cobra.Command {
	var ids string
	var o lm.GenerateOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "generate PATH --ids 1,2,3 [--ids 4,5]",
		Short: "Generate from token-id prompts with the KV-cache engine (greedy unless --temperature > 0)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prompts, err := parsePrompts(ids)
			if err != nil {
				return err
			}
			if err := initRuntime(); err != nil {
				return err
			}
			m, err := lm.Load(args[0], lm.LoadOptions{Session: sessionOptions()})
			if err != nil {
				return err
			}
			defer m.Close()
			comps, st, err := m.Generate(cmd.Context(), prompts, o)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				b, err := json.Marshal(map[string]any{"completions": comps, "stats": st})
				if err != nil {
					return err
				}
				fmt.Fprintln(w, string(b))
				return nil
			}
			for _, c := range comps {
				fmt.Fprintf(w, "prompt %d sample %d (%s): %v\n", c.Prompt, c.Sample, c.Finish, c.Tokens)
			}
			fmt.Fprintf(w, "prefill %v (%d runs), decode %v for %d steps; %d tokens\n", st.Prefill, st.PrefillRuns, st.Decode, st.DecodeSteps, st.GeneratedTokens)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&ids, "ids", "", "prompts as token ids: comma-separated, prompts separated by ';'")
	f.IntVar(&o.MaxNewTokens, "max-new-tokens", 32, "tokens to generate at most")
	f.IntVar(&o.NumGenerations, "num-generations", 1, "completions per prompt")
	f.Float64Var(&o.Temperature, "temperature", 0, "sampling temperature (0: greedy)")
	f.IntVar(&o.TopK, "top-k", 0, "keep the k most likely tokens (0: off)")
	f.Float64Var(&o.TopP, "top-p", 0, "nucleus sampling mass (0 or 1: off)")
	f.Uint64Var(&o.Seed, "seed", 0, "sampling seed")
	f.BoolVar(&o.IgnoreEOS, "ignore-eos", false, "do not stop at EOS")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// parsePrompts reads "1,2,3;4,5" into token-id prompts.
func parsePrompts(s string) ([][]int64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("--ids is required (token ids, comma-separated; prompts separated by ';')")
	}
	var out [][]int64
	for i, p := range strings.Split(s, ";") {
		var ids []int64
		for _, f := range strings.Split(p, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			v, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("--ids prompt %d: %q is not a token id", i, f)
			}
			ids = append(ids, v)
		}
		out = append(out, ids)
	}
	return out, nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/pipeline/serve"
	"github.com/tagpr/tagpr/tokenize"
)

func init() {
	modelCmd := &cobra.Command{Use: "model", Short: "Causal LMs: inspect an ONNX model, build a built-in one, generate, import and export Hugging Face checkpoints"}
	modelCmd.AddCommand(modelInfoCmd(), modelInitCmd(), modelGenerateCmd(), modelProbeCmd(), modelProbeCompareCmd(), modelImportHFCmd(), modelExportHFCmd())
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
	var ids, tokPath, system string
	var texts, chats, stops []string
	var o lm.GenerateOptions
	var asJSON bool
	thinking := true
	cmd := &cobra.Command{
		Use:   "generate PATH (--prompt TEXT | --chat TEXT | --ids 1,2,3)...",
		Short: "Generate with the KV-cache engine from text, chat messages or token ids (greedy unless --temperature > 0 or generation_config.json samples)",
		Long: "PATH is a model folder (or .onnx file); text prompts need its tokenizer.json (or --tokenizer).\n" +
			"--prompt encodes text as is; --chat renders one user message (after --system) with the tokenizer's chat\n" +
			"template and the assistant's generation prompt, as `tagpr serve` does (--enable-thinking=false: as its\n" +
			"chat_template_kwargs {\"enable_thinking\": false}). Each flag may repeat: one prompt each,\n" +
			"numbered --ids first, then --prompt, then --chat.\n" +
			"Prints each completion's text (token ids when there is no tokenizer); timings go to stderr.\n" +
			"--temperature, --top-p, --top-k and --repetition-penalty default to the model's generation_config.json\n" +
			"(do_sample false: greedy; its repetition_penalty applies to greedy decoding too, as in transformers), as\n" +
			"`tagpr serve` does for requests; without them there, generation is greedy and unpenalized.\n" +
			"--frequency-penalty and --presence-penalty are OpenAI's (over the tokens generated so far, as vLLM applies them).\n\n" +
			"--json prints {\"completions\": [{\"prompt\", \"sample\", \"text\", \"token_ids\", \"logprobs\" (natural log of\n" +
			"each token's probability), \"finish_reason\" (eos | stop | length), \"stop\" (the stop string matched)}],\n" +
			"\"stats\": {\"sequences\", \"prompt_tokens\", \"generated_tokens\", \"prefill_runs\", \"decode_steps\",\n" +
			"\"prefill_ms\", \"decode_ms\" (wall time in milliseconds), \"decode_tokens_per_second\"}}.",
		Example: "  tagpr model generate models/policy --chat \"Which genre fits this user?\" --max-new-tokens 64\n" +
			"  tagpr model generate models/policy --prompt \"Once upon a time\" --temperature 0.8 --num-generations 3 --json\n" +
			"  tagpr model generate models/tiny --ids \"1,5,9;1,7\"",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (runErr error) {
			defer func() { runErr = keepsNothing(runErr) }() // nothing is written until every completion is done
			if ids == "" && len(texts) == 0 && len(chats) == 0 {
				return errors.New("give prompts with --prompt TEXT, --chat TEXT or --ids 1,2,3 (each may repeat)")
			}
			switch {
			case !(o.Temperature >= 0) || o.Temperature > 0 && o.Temperature < lm.MinTemperature:
				return fmt.Errorf("--temperature %v: want 0 (greedy) or ≥ %g", o.Temperature, lm.MinTemperature)
			case o.NumGenerations < 1:
				return fmt.Errorf("--num-generations %d: want ≥ 1", o.NumGenerations)
			case o.MaxNewTokens < 1:
				return fmt.Errorf("--max-new-tokens %d: want ≥ 1", o.MaxNewTokens)
			case !(o.RepetitionPenalty > 0 && o.RepetitionPenalty <= math.MaxFloat64):
				return fmt.Errorf("--repetition-penalty %v: want a finite number > 0 (1: off)", o.RepetitionPenalty)
			case !(o.FrequencyPenalty >= -2 && o.FrequencyPenalty <= 2):
				return fmt.Errorf("--frequency-penalty %v: want -2 to 2 (0: off)", o.FrequencyPenalty)
			case !(o.PresencePenalty >= -2 && o.PresencePenalty <= 2):
				return fmt.Errorf("--presence-penalty %v: want -2 to 2 (0: off)", o.PresencePenalty)
			}
			for i, s := range stops {
				if s == "" {
					return fmt.Errorf("--stop %d is empty: a stop string needs at least one character", i+1)
				}
			}
			if err := initRuntime(); err != nil {
				return err
			}
			gm, err := openGenerateModel(args[0], tokPath, len(texts)+len(chats) > 0 || len(stops) > 0)
			if err != nil {
				return err
			}
			defer gm.close()
			if err := gm.samplingDefaults(cmd, &o); err != nil {
				return err
			}
			var prompts [][]int64
			if ids != "" {
				if prompts, err = parsePrompts(ids); err != nil {
					return err
				}
			}
			for _, t := range texts {
				prompts = append(prompts, gm.text.EncodeText(t))
			}
			for _, c := range chats {
				var msgs []tokenize.Message
				if system != "" {
					msgs = append(msgs, tokenize.Message{Role: "system", Content: system})
				}
				p, _, err := gm.text.EncodeChatWith(append(msgs, tokenize.Message{Role: "user", Content: c}),
					tokenize.ChatOptions{AddGenerationPrompt: true, DisableThinking: !thinking})
				if err != nil {
					return err
				}
				prompts = append(prompts, p)
			}
			o.StopStrings = stops
			if err := gm.fitsMemory(prompts, o); err != nil {
				return err
			}
			comps, st, err := gm.generate(cmd.Context(), prompts, o)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return printGenerateJSON(w, comps, st, gm.text != nil)
			}
			for _, c := range comps {
				if len(comps) > 1 {
					fmt.Fprintf(w, "--- prompt %d, sample %d (%s) ---\n", c.Prompt, c.Sample, c.Finish)
				}
				if gm.text != nil {
					fmt.Fprintln(w, c.Text)
				} else {
					fmt.Fprintln(w, c.Tokens)
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "prefill %.1f ms (%d runs), decode %.1f ms for %d steps; %d tokens\n",
				ms(st.Prefill), st.PrefillRuns, ms(st.Decode), st.DecodeSteps, st.GeneratedTokens)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&texts, "prompt", nil, "a text prompt, encoded as is (repeatable)")
	f.StringArrayVar(&chats, "chat", nil, "a user message, rendered with the chat template (repeatable: one prompt each)")
	f.StringVar(&system, "system", "", "system message before each --chat message")
	f.BoolVar(&thinking, "enable-thinking", true, "with false, --chat prompts as apply_chat_template(enable_thinking=False): Qwen3's template closes an empty <think> block so the model answers without reasoning (other templates ignore it)")
	f.StringVar(&ids, "ids", "", "prompts as token ids: comma-separated, prompts separated by ';'")
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer.json (or a models.lock name) instead of PATH's")
	f.StringArrayVar(&stops, "stop", nil, "stop string: the completion ends at it and the text is cut before it (repeatable)")
	f.IntVar(&o.MaxNewTokens, "max-new-tokens", 32, "tokens to generate at most")
	f.IntVar(&o.NumGenerations, "num-generations", 1, "completions per prompt")
	f.Float64Var(&o.Temperature, "temperature", 0, "sampling temperature (0: greedy; left out: generation_config.json's, else 0)")
	f.IntVar(&o.TopK, "top-k", 0, "keep the k most likely tokens (0: off; left out: generation_config.json's, else off)")
	f.Float64Var(&o.TopP, "top-p", 0, "nucleus sampling mass (0 or 1: off; left out: generation_config.json's, else off)")
	f.Float64Var(&o.RepetitionPenalty, "repetition-penalty", 1, "transformers' repetition_penalty over the prompt's and the generated tokens (1: off; left out: generation_config.json's, else off)")
	f.Float64Var(&o.FrequencyPenalty, "frequency-penalty", 0, "subtract this times each generated token's count from its logit (-2 to 2, 0: off)")
	f.Float64Var(&o.PresencePenalty, "presence-penalty", 0, "subtract this from the logit of each token generated so far (-2 to 2, 0: off)")
	f.Uint64Var(&o.Seed, "seed", 0, "sampling seed")
	f.BoolVar(&o.IgnoreEOS, "ignore-eos", false, "do not stop at EOS")
	f.BoolVar(&asJSON, "json", false, "print JSON (snake_case keys; see above)")
	return cmd
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// generateModel is a model opened for `model generate`: with its tokenizer
// when there is one (text in and out), else bare (token ids only).
type generateModel struct {
	text *serve.Model
	bare *lm.Model
}

// fitsMemory refuses a generation whose rows (prompts × --num-generations)
// cannot fit the machine: each row holds logits over the vocabulary (the
// step's, the head's and the prefill's) and a KV cache in two buffer sets.
// Past it the process died with "fatal error: runtime: out of memory".
func (g *generateModel) fitsMemory(prompts [][]int64, o lm.GenerateOptions) error {
	lay := g.layout()
	longest := 0
	for _, p := range prompts {
		longest = max(longest, len(p))
	}
	rows := int64(len(prompts)) * int64(o.NumGenerations)
	perPos := int64(2*2*lay.Layers*lay.KVHeads*lay.HeadDim) * 4
	need := rows * (3*int64(lay.Vocab)*4 + int64(longest+o.MaxNewTokens)*perPos)
	have, err := train.MachineMemory()
	if err != nil || need <= have {
		return nil
	}
	return fmt.Errorf("model generate: %d prompts × --num-generations %d = %d sequences need about %.1f GiB (logits over the %d-token vocabulary and the KV cache), more than this machine's %.1f GiB: lower --num-generations or --max-new-tokens, or run the prompts in parts",
		len(prompts), o.NumGenerations, rows, float64(need)/(1<<30), lay.Vocab, float64(have)/(1<<30))
}

// samplingDefaults fills the sampling flags left out from the model's
// generation_config.json (do_sample, temperature, top_p, top_k,
// repetition_penalty), as
// `tagpr serve` does for requests, and says so on stderr; with none there,
// generation stays greedy.
func (g *generateModel) samplingDefaults(cmd *cobra.Command, o *lm.GenerateOptions) error {
	m := g.bare
	if g.text != nil {
		m = g.text.LM
	}
	d, err := serve.ReadSamplingDefaults(m.Generation, lm.Sampling{})
	if err != nil {
		return fmt.Errorf("model generate: %w", err)
	}
	if w := d.IgnoredWarning(); w != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
	}
	fl := cmd.Flags()
	used := map[string]bool{}
	if !fl.Changed("temperature") {
		o.Temperature = d.Temperature
		used["temperature"], used["do_sample"] = d.FromFile["temperature"], d.FromFile["do_sample"]
	}
	if !fl.Changed("top-p") {
		o.TopP, used["top_p"] = d.TopP, d.FromFile["top_p"]
	}
	if !fl.Changed("top-k") {
		o.TopK, used["top_k"] = d.TopK, d.FromFile["top_k"]
	}
	if !fl.Changed("repetition-penalty") && d.FromFile["repetition_penalty"] {
		o.RepetitionPenalty, used["repetition_penalty"] = d.RepetitionPenalty, true
	}
	d.Sampling, d.FromFile = o.Sampling, used
	if o.Greedy() && (fl.Changed("top-p") && o.TopP > 0 && o.TopP < 1 || fl.Changed("top-k") && o.TopK > 0) {
		// As transformers warns when do_sample is false: the filters only
		// restrict what sampling draws from.
		fmt.Fprintln(cmd.ErrOrStderr(), "model generate: --top-p and --top-k do nothing in greedy decoding; give --temperature > 0 to sample")
	}
	switch f := d.FileString(); {
	case used["do_sample"]:
		fmt.Fprintf(cmd.ErrOrStderr(), "model generate: %s; give --temperature to sample\n", f)
	case f != "" && o.Temperature > 0: // greedy by the flag: the file's top_p/top_k do nothing
		fmt.Fprintf(cmd.ErrOrStderr(), "model generate: %s (the sampling flags left out; --temperature 0 for greedy)\n", f)
	case used["repetition_penalty"]: // greedy by the flag, still penalized, as transformers does
		fmt.Fprintf(cmd.ErrOrStderr(), "model generate: repetition_penalty %g from %s (--repetition-penalty 1 turns it off)\n", o.RepetitionPenalty, d.File)
	}
	return nil
}

func (g *generateModel) layout() lm.Layout {
	if g.text != nil {
		return g.text.LM.Layout
	}
	return g.bare.Layout
}

func openGenerateModel(path, tokPath string, needText bool) (*generateModel, error) {
	// A missing folder is named as such, not as one without a tokenizer.
	if _, err := lm.ResolveModelPath(path); err != nil {
		return nil, err
	}
	half := runCfg.Runtime.HalfGeneration()
	oo := serve.OpenOptions{Session: sessionOptions(), Half: half}
	if tokPath == "" && hasTokenizer(path) {
		tokPath = folderTokenizer(path)
	}
	if tokPath != "" {
		tok, err := loadTokenizer(tokPath)
		if err != nil {
			return nil, err
		}
		if err := applyChatTemplate(tok); err != nil {
			return nil, err
		}
		oo.Tokenizer = tok
	} else if !needText {
		m, err := lm.Load(path, lm.LoadOptions{Session: sessionOptions(), Half: half})
		if err != nil {
			return nil, err
		}
		return &generateModel{bare: m}, nil
	}
	m, err := serve.Open(path, oo)
	if err != nil {
		return nil, err
	}
	return &generateModel{text: m}, nil
}

func hasTokenizer(path string) bool {
	_, err := os.Stat(folderTokenizer(path))
	return err == nil
}

// folderTokenizer is the tokenizer.json beside a model (a folder, or its
// .onnx file).
func folderTokenizer(path string) string {
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		path = filepath.Dir(path)
	}
	return filepath.Join(path, "tokenizer.json")
}

// applyChatTemplate renders chats with tokenizer.chat_template when it names
// a format (auto keeps what tokenizer_config.json declares): the way to
// serve or generate with a model whose declared template tagpr does not
// recognise but which was trained on a format it renders.
func applyChatTemplate(tok *tokenize.Tokenizer) error {
	name := runCfg.Tokenizer.ChatTemplate
	if name == "" || name == "auto" {
		return nil
	}
	f, ok := tokenize.ChatFormatByName(name)
	if !ok {
		return fmt.Errorf("tokenizer.chat_template %q: want auto, %s", name, tokenize.ChatFormatNames)
	}
	tok.SetChatFormat(f)
	return nil
}

func (g *generateModel) generate(ctx context.Context, prompts [][]int64, o lm.GenerateOptions) ([]serve.TextCompletion, lm.Stats, error) {
	if g.text != nil {
		return g.text.Generate(ctx, prompts, o)
	}
	comps, st, err := g.bare.Generate(ctx, prompts, o)
	out := make([]serve.TextCompletion, len(comps))
	for i, c := range comps {
		out[i] = serve.TextCompletion{Completion: c}
	}
	return out, st, err
}

func (g *generateModel) close() {
	if g.text != nil {
		g.text.Close()
	} else {
		g.bare.Close()
	}
}

// generateJSON is `model generate --json`: snake_case keys, times in
// milliseconds.
type generateJSON struct {
	Completions []completionJSON `json:"completions"`
	Stats       statsJSON        `json:"stats"`
}

type completionJSON struct {
	Prompt       int       `json:"prompt"`
	Sample       int       `json:"sample"`
	Text         *string   `json:"text,omitempty"`
	TokenIDs     []int64   `json:"token_ids"`
	LogProbs     []float32 `json:"logprobs,omitempty"`
	FinishReason string    `json:"finish_reason"`
	Stop         string    `json:"stop,omitempty"`
}

type statsJSON struct {
	Sequences       int     `json:"sequences"`
	PromptTokens    int     `json:"prompt_tokens"`
	GeneratedTokens int     `json:"generated_tokens"`
	PrefillRuns     int     `json:"prefill_runs"`
	DecodeSteps     int     `json:"decode_steps"`
	PrefillMS       float64 `json:"prefill_ms"`
	DecodeMS        float64 `json:"decode_ms"`
	DecodeTPS       float64 `json:"decode_tokens_per_second"`
}

func printGenerateJSON(w io.Writer, comps []serve.TextCompletion, st lm.Stats, withText bool) error {
	out := generateJSON{Stats: statsJSON{Sequences: st.Sequences, PromptTokens: st.PromptTokens, GeneratedTokens: st.GeneratedTokens,
		PrefillRuns: st.PrefillRuns, DecodeSteps: st.DecodeSteps, PrefillMS: ms(st.Prefill), DecodeMS: ms(st.Decode)}}
	if st.Decode > 0 {
		out.Stats.DecodeTPS = float64(st.GeneratedTokens) / st.Decode.Seconds()
	}
	for _, c := range comps {
		j := completionJSON{Prompt: c.Prompt, Sample: c.Sample, TokenIDs: c.Tokens, LogProbs: c.LogProbs, FinishReason: string(c.Finish), Stop: c.Stop}
		if withText {
			text := c.Text
			j.Text = &text
		}
		out.Completions = append(out.Completions, j)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// parsePrompts reads "1,2,3;4,5" into token-id prompts.
func parsePrompts(s string) ([][]int64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("--ids is empty (token ids, comma-separated; prompts separated by ';')")
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

package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/tokenize"
)

// Chat tokens of a trained tokenizer (ChatML, the default format).
const (
	padToken       = "<|endoftext|>"
	turnStartToken = "<|im_start|>"
	turnEndToken   = "<|im_end|>"
)

// chatFormatNamed maps tokenizer.chat_template to a format; nil for auto.
func chatFormatNamed(name string) (*tokenize.ChatFormat, error) {
	if name == "" || name == "auto" {
		return nil, nil
	}
	f, ok := tokenize.ChatFormatByName(name)
	if !ok {
		return nil, fmt.Errorf("%q: want auto, %s", name, tokenize.ChatFormatNames)
	}
	return &f, nil
}

// setChatFormat applies tokenizer.chat_template (name; auto keeps what
// tokenizer_config.json declares), with any date the template takes from the
// clock fixed (Llama 3.2's): a run's prompts must not change with the day
// they are rendered or resumed on.
func setChatFormat(tok *tokenize.Tokenizer, name string) error {
	f, err := chatFormatNamed(name)
	if err != nil {
		return err
	}
	if f != nil {
		tok.SetChatFormat(*f)
	}
	if cf := tok.ChatFormat(); cf.Name == "llama3.2" {
		tok.SetChatFormat(cf.Undated())
	}
	return nil
}

// loadTokenizer opens a tokenizer.json (with its tokenizer_config.json)
// and applies the configured chat template.
func (r *runEnv) loadTokenizer(path string) (*tokenize.Tokenizer, error) {
	tok, err := tokenize.Load(path)
	if err != nil {
		return nil, err
	}
	if err := setChatFormat(tok, r.cfg.Tokenizer.ChatTemplate); err != nil {
		return nil, fmt.Errorf("tokenizer.chat_template: %w", err)
	}
	return tok, nil
}

// prepareTokenizer loads the configured tokenizer, or trains one on the
// training split's prompts and answers (with one token per tag) the first
// time.
func (r *runEnv) prepareTokenizer() error {
	if r.cfg.Tokenizer.Train == nil {
		tok, err := r.loadTokenizer(r.tokenizerPath())
		if err != nil {
			return err
		}
		r.tok = tok
		return nil
	}
	dir := r.dir("tokenizer")
	path := filepath.Join(dir, "tokenizer.json")
	if err := r.checkStamp(dir, "tokenizer", r.policySettings(), exists(path)); err != nil {
		return err
	}
	if !exists(path) {
		var corpus []string
		for _, td := range r.data.Tasks {
			exs := td.Splits["train"]
			for i := range exs {
				corpus = append(corpus, tokenizerTexts(Parts(td.Task, &exs[i], r.tx, r.prompt, true))...)
			}
		}
		vocab := r.cfg.Tokenizer.Train.VocabSize
		note(r.h, "tokenizer", "training a %d-token byte-level BPE on %d texts", vocab, len(corpus))
		tok, err := tokenize.Train(tokenize.TrainOptions{Corpus: corpus, VocabSize: vocab, SpecialTokens: []string{padToken, turnStartToken, turnEndToken}})
		if err != nil {
			return fmt.Errorf("tokenizer.train: %w", err)
		}
		names := make([]string, len(r.tx))
		for i, t := range r.tx {
			names[i] = t.Name
		}
		tok.RegisterTags(names)
		if err := tok.SaveConfig(filepath.Join(dir, "tokenizer_config.json")); err != nil {
			return err
		}
		// tokenizer.json comes last: its presence marks the tokenizer done.
		if err := tok.Save(path); err != nil {
			return err
		}
	}
	tok, err := r.loadTokenizer(path)
	if err != nil {
		return err
	}
	r.tok = tok
	return nil
}

// tokenizerTexts renders an example as the model reads it (chat turns and
// layout headers included) and cuts it at the chat and tag tokens, which
// join the vocabulary whole: BPE then learns the words as they appear between
// those tokens ("user", "Input:") instead of glued to a '>' (role names and
// headers were spelled in 2–8 pieces otherwise: docs/benchmark.md).
func tokenizerTexts(p tokenize.PromptParts) []string {
	var b strings.Builder
	for _, m := range tokenize.DefaultPromptLayout.Messages(p, len(p.Profile)) {
		before, body, after := tokenize.ChatML.Turn(m.Role, m.Content)
		b.WriteString(before + body + after)
	}
	return addedToken.Split(b.String(), -1)
}

// addedToken matches the chat and tag tokens a trained tokenizer adds whole.
var addedToken = regexp.MustCompile(`<\|[a-z_]+\|>|</?[a-z_]+>`)

// prepareBase points at the exported policy, or builds the built-in one
// (sized to the tokenizer) the first time.
func (r *runEnv) prepareBase() error {
	if r.cfg.Policy.Dir != "" && !r.policyCheckpoint() {
		r.base = r.cfg.Policy.Dir
		return r.policyIDs()
	}
	r.base = r.dir("base")
	model := filepath.Join(r.base, "model.onnx")
	if err := r.checkStamp(r.base, "base", r.policySettings(), exists(model)); err != nil {
		return err
	}
	if r.policyCheckpoint() {
		if !exists(model) {
			if err := r.importPolicy(); err != nil {
				return err
			}
		}
		return r.policyIDs()
	}
	eot, err := tokenID(r.tok, r.tok.ChatFormat().EndOfTurn)
	if err != nil {
		return err
	}
	pad := tokenizerPad(r.tok)
	if !exists(model) {
		mc := r.cfg.Policy.Builtin.lmConfig()
		mc.Vocab = r.tok.VocabSize()
		mc.EOS, mc.BOS, mc.Pad = eot, eot, &pad
		note(r.h, "model", "building a %s model: %d layers, d_model %d, vocab %d, %d parameters", mc.Defaults().Arch, mc.Defaults().Layers, mc.Defaults().DModel, mc.Vocab, mc.Defaults().Params())
		if err := builtinFits(mc, r.cfg.Runtime.MaxMemoryGB); err != nil {
			return err
		}
		// Built in a side folder and renamed, so a killed run never leaves
		// a model without its config.
		tmp := r.base + ".tmp"
		os.RemoveAll(tmp)
		if _, err := lm.WriteModelDir(mc, tmp, false); err != nil {
			return err
		}
		if _, err := hf.CopySideFiles(filepath.Dir(r.tok.Path()), tmp); err != nil {
			return err
		}
		if err := r.replaceBase(tmp); err != nil {
			return err
		}
	}
	return r.policyIDs()
}

// replaceBase puts the model written in the side folder tmp in the place
// of out/base, which holds only the stage's stamp.
func (r *runEnv) replaceBase(tmp string) error { return replaceStamped(r.base, tmp, "base") }

// replaceStamped puts the model written in the side folder tmp in the
// place of dir, which holds only its stamp: the stamp moves into tmp, then
// tmp is renamed.
func replaceStamped(dir, tmp, what string) error {
	if err := os.Rename(filepath.Join(dir, train.SettingsFile), filepath.Join(tmp, train.SettingsFile)); err != nil {
		return err
	}
	if err := os.Remove(dir); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return os.Rename(tmp, dir)
}

// isCheckpoint reports whether d is a transformers checkpoint (config.json
// and model.safetensors or its index, no model.onnx): a run imports it
// before it loads the model.
func isCheckpoint(d string) bool {
	if d == "" {
		return false
	}
	if _, err := lm.ResolveModelPath(d); err == nil {
		return false
	}
	return hf.IsCheckpoint(d)
}

// policyCheckpoint reports whether policy.dir is a transformers
// checkpoint: the run imports it into out/base first.
func (r *runEnv) policyCheckpoint() bool { return isCheckpoint(r.cfg.Policy.Dir) }

// policyFiles are policy.dir's modelFiles, found once a run: every
// stage's stamp asks for them.
func (r *runEnv) policyFiles() ([]string, error) {
	if r.policy != nil {
		return r.policy, nil
	}
	files, err := modelFiles(r.cfg.Policy.Dir)
	if err != nil {
		return nil, err
	}
	r.policy = files
	return files, nil
}

// modelFiles are the files of a model folder the run's stamps name (the
// first one's size, every one's sha256): the ONNX model and its configs,
// or the checkpoint's weights and configs.
func modelFiles(d string) ([]string, error) {
	if !isCheckpoint(d) {
		mp, err := lm.ResolveModelPath(d)
		if err != nil {
			return nil, err
		}
		return lm.Files(mp), nil
	}
	ck, err := hf.OpenCheckpoint(d)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	files := ck.Files()
	for _, f := range []string{"config.json", "generation_config.json"} {
		if p := filepath.Join(d, f); exists(p) {
			files = append(files, p)
		}
	}
	return files, nil
}

// importPolicy converts the checkpoint in policy.dir into out/base, as
// `tagpr model import-hf` does.
func (r *runEnv) importPolicy() error {
	return r.importCheckpoint("policy.dir", r.cfg.Policy.Dir, r.base)
}

// importCheckpoint converts the checkpoint src (the config's key; a causal
// LM, or a BERT, RoBERTa, XLM-RoBERTa or MPNet text encoder) into dst, which holds only its stamp:
// written in a side folder and renamed, so a killed run never leaves half a
// model.
func (r *runEnv) importCheckpoint(key, src, dst string) error {
	wantEncoder := key == encoderDirKey
	if isEncoder := hf.IsEncoder(src); isEncoder != wantEncoder {
		what, want := "a causal LM's", "a text encoder (BERT, RoBERTa, XLM-RoBERTa or MPNet)"
		if isEncoder {
			what, want = "a text encoder's", "a causal LM (Llama, Mistral, Qwen2, Qwen3)"
		}
		return fmt.Errorf("%s: %s holds %s checkpoint; %s takes %s", key, src, what, key, want)
	}
	tmp := dst + ".tmp"
	os.RemoveAll(tmp)
	if wantEncoder {
		res, err := hf.ImportEncoder(src, tmp)
		if err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("%s: %w", key, err)
		}
		note(r.h, "model", "imported the %s text encoder %s into %s: %d layers, hidden %d, %d parameters", res.ModelType, src, dst, res.Layers, res.Hidden, res.Params)
		return replaceStamped(dst, tmp, key)
	}
	task := "import " + src + " (MiB)"
	var last time.Time
	res, err := hf.Import(src, tmp, hf.ImportOptions{Progress: func(done, total int64) {
		// A line every few seconds, as `model import-hf` shows it.
		if now := time.Now(); now.Sub(last) >= 3*time.Second || done == total {
			last = now
			// MiB rounded down until the end: a step rounded up to the
			// total would read as done, and the last report as a new task.
			mib, all := int(done>>20), int((total+1<<20-1)>>20)
			if done == total {
				mib = all
			}
			r.h.Report(train.Progress{Task: task, Step: mib, Total: all})
		}
	}})
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("%s: %w", key, err)
	}
	note(r.h, "model", "imported the %s checkpoint %s into %s: %d layers, d_model %d, vocab %d, %d parameters", res.ModelType, src, dst,
		res.Config.Defaults().Layers, res.Config.Defaults().DModel, res.Config.Defaults().Vocab, res.Params)
	return replaceStamped(dst, tmp, key)
}

// builtinFits refuses a built-in policy whose weights cannot be built in
// the memory runtime.max_memory_gb allows (building holds them about twice:
// the float32 weights and the written model): sized past it, the run was
// killed for memory while it built the model, with no message.
func builtinFits(mc lm.Config, maxMemoryGB float64) error {
	limit, check, err := train.MemoryLimit(maxMemoryGB)
	if err != nil || !check {
		return err
	}
	params := mc.Defaults().Params()
	need := 2 * 4 * float64(params)
	if params <= 0 || need > float64(limit) { // params ≤ 0: the count overflowed
		return fmt.Errorf("policy.builtin: %d layers, d_model %d, ffn %d, vocab %d are about %.3g parameters, %.3g GiB to build, over the %s runtime.max_memory_gb allows (0: the memory free when it starts): make the model smaller",
			mc.Defaults().Layers, mc.Defaults().DModel, mc.Defaults().FFN, mc.Vocab, float64(params), need/(1<<30), train.FormatBytes(limit))
	}
	return nil
}

// policyIDs sets the base model's stop and pad ids.
func (r *runEnv) policyIDs() error {
	var err error
	r.eos, r.pad, err = ModelIDs(r.base, r.tok)
	return err
}

// ModelIDs are the ids that end a completion of the model in dir
// (Tokenizer.StopTokens of the eos ids of generation_config.json and
// config.json) and its pad id (theirs, else the tokenizer's <|endoftext|>,
// pad or eos token).
func ModelIDs(dir string, tok *tokenize.Tokenizer) (eos []int64, pad int64, err error) {
	hc, err := lm.ReadHFConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, 0, err
	}
	gc, err := lm.ReadGenerationConfig(filepath.Join(dir, "generation_config.json"))
	if err != nil {
		return nil, 0, err
	}
	var modelEOS []int64
	var padIDs []lm.TokenIDs
	if gc != nil {
		modelEOS, padIDs = append(modelEOS, gc.EOSTokenID...), append(padIDs, gc.PadTokenID)
	}
	if hc != nil {
		modelEOS, padIDs = append(modelEOS, hc.EOSTokenID...), append(padIDs, hc.PadTokenID)
	}
	eos = tok.StopTokens(modelEOS...)
	if len(eos) == 0 {
		return nil, 0, fmt.Errorf("model %s: no stop token: neither its configs nor its tokenizer name an eos or end-of-turn token", dir)
	}
	for _, ids := range padIDs {
		if len(ids) > 0 {
			return eos, ids[0], nil
		}
	}
	return eos, tokenizerPad(tok), nil
}

// tokenizerPad is the tokenizer's <|endoftext|>, else its pad (or eos) token.
func tokenizerPad(tok *tokenize.Tokenizer) int64 {
	if id, ok := tok.TokenID(padToken); ok {
		return int64(id)
	}
	return int64(tok.PadToken())
}

func tokenID(tok *tokenize.Tokenizer, s string) (int64, error) {
	id, ok := tok.TokenID(s)
	if !ok {
		return 0, fmt.Errorf("tokenizer %s has no %s token (the chat format's end of turn; set tokenizer.chat_template)", tok.Path(), s)
	}
	return int64(id), nil
}

// openModel loads the named model (base, sft, rl, rl:NAME) for generation.
func (r *runEnv) openModel(name string) (Policy, error) {
	return r.openModelAs(name, false)
}

// openModelAs is openModel, in float16 with half (runtime.generation_dtype).
func (r *runEnv) openModelAs(name string, half bool) (Policy, error) {
	m, err := lm.Load(r.modelDir(name), lm.LoadOptions{Session: r.sess, TokenizerVocab: r.tok.VocabSize(), Half: half})
	if err != nil {
		return Policy{}, err
	}
	return Policy{Model: m, Tok: r.tok, Name: name, EOS: r.eos}, nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(dst, b, 0o644); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

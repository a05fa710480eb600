package pipeline

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/rewardmodel"
)

// RunConfig is one whole run of the recipe: where the data and the policy
// come from, each stage's settings, and the output folder. It is read once
// (by the command line, from YAML/TOML/JSON, TAGPR_* variables and flags)
// and passed down; configs/demo.yaml is the built-in one. Keys are the
// mapstructure tags; RL knobs carry TRL's GRPOConfig names (RLStage).
type RunConfig struct {
	// Out is the run folder: every stage writes below it, and a rerun
	// resumes from what it holds.
	Out string `mapstructure:"out"`
	// Seed is the base seed: a stage seed left at 0 is derived from it.
	Seed      uint64          `mapstructure:"seed"`
	Runtime   RuntimeConfig   `mapstructure:"runtime"`
	Log       LogConfig       `mapstructure:"log"`
	Policy    PolicyConfig    `mapstructure:"policy"`
	Tokenizer TokenizerConfig `mapstructure:"tokenizer"`
	// Taxonomy is a tag taxonomy file (YAML or JSON list of name,
	// description, required, order); "" is the built-in default.
	Taxonomy  string          `mapstructure:"taxonomy"`
	Data      DataConfig      `mapstructure:"data"`
	Retrieval RetrievalConfig `mapstructure:"retrieval"`
	Teacher   TeacherConfig   `mapstructure:"teacher"`
	Stages    StagesConfig    `mapstructure:"stages"`
}

// RuntimeConfig is how every ORT session of the run is made (ort.Runtime).
type RuntimeConfig struct {
	Library  string `mapstructure:"library"`  // libonnxruntime.so ("": $ONNXRUNTIME_SHARED_LIBRARY_PATH, then the models.lock cache)
	Provider string `mapstructure:"provider"` // cpu or cuda
	Device   int    `mapstructure:"device"`   // CUDA device ordinal
	Threads  int    `mapstructure:"threads"`  // intra-op threads per session (0: one per core)
	// Spinning is auto, on or off: whether ORT's pool threads busy-wait
	// after a run. auto keeps each stage's default (spinning for SFT,
	// predict and serve; off for RL steps and PRMU, whose sessions take
	// turns on the same cores). Which is faster depends on what else uses
	// the cores; it changes no result.
	Spinning ort.Spinning `mapstructure:"spinning"`
	// CUDALibraries are extra folders (colon-separated) to search for the
	// CUDA libraries.
	CUDALibraries string `mapstructure:"cuda_libraries"`
	// GenerationDType is float32 or float16: with float16, generation
	// (predict, RL rollouts, serve) runs its MatMuls over float16 copies of
	// the weights (lm.LoadOptions.Half); training keeps float32 weights.
	GenerationDType string `mapstructure:"generation_dtype"`
	// MaxMemoryGB is the memory the SFT and RL stages may plan for (GiB): 0
	// the machine's (its cgroup limit, else MemTotal), -1 no check. Each
	// stage prints its estimate and refuses to start past the limit, as
	// `train lm --max-memory-gb` does.
	MaxMemoryGB float64 `mapstructure:"max_memory_gb"`
}

// HalfGeneration reports whether generation runs in float16
// (runtime.generation_dtype).
func (r RuntimeConfig) HalfGeneration() bool { return r.GenerationDType == "float16" }

// Runtime is the ORT runtime the process declares (ort.Start).
func (r RuntimeConfig) Runtime() ort.Runtime {
	var dirs []string
	if r.CUDALibraries != "" {
		dirs = filepath.SplitList(r.CUDALibraries)
	}
	return ort.Runtime{Library: r.Library, Provider: r.Provider, Device: r.Device, Threads: r.Threads,
		Spinning: r.Spinning, CUDALibraries: dirs}
}

// Session is the ORT options every stage's sessions start from.
func (r RuntimeConfig) Session() ort.Options { return r.Runtime().Options() }

// LogConfig chooses how progress is shown.
type LogConfig struct {
	Format string `mapstructure:"format"` // auto (text on a terminal, JSON otherwise), text or json
}

// PolicyConfig is the model the run fine-tunes: an exported folder (as
// optimum-cli export onnx --task text-generation-with-past writes it:
// model.onnx, config.json, tokenizer.json, tokenizer_config.json) or a
// built-in model built at the start of the run.
type PolicyConfig struct {
	Dir     string         `mapstructure:"dir"`
	Builtin *BuiltinPolicy `mapstructure:"builtin"`
}

// BuiltinPolicy sizes a built-in causal LM (lm.Config); its vocabulary is
// the tokenizer's.
type BuiltinPolicy struct {
	Arch         string `mapstructure:"arch"` // llama or gpt2
	Layers       int    `mapstructure:"layers"`
	DModel       int    `mapstructure:"d_model"`
	Heads        int    `mapstructure:"heads"`
	KVHeads      int    `mapstructure:"kv_heads"`
	FFN          int    `mapstructure:"ffn"`
	MaxPositions int    `mapstructure:"max_positions"`
	Seed         uint64 `mapstructure:"seed"`
	// InitStd is the weights' initial standard deviation (0:
	// lm.DefaultInitStd, 0.02 as HF's).
	InitStd float64 `mapstructure:"init_std"`
}

func (b BuiltinPolicy) lmConfig() lm.Config {
	return lm.Config{Arch: lm.Arch(b.Arch), Layers: b.Layers, DModel: b.DModel, Heads: b.Heads, KVHeads: b.KVHeads,
		FFN: b.FFN, MaxPositions: b.MaxPositions, Seed: b.Seed, InitStd: b.InitStd}
}

// TokenizerConfig is the policy's tokenizer and chat template.
type TokenizerConfig struct {
	// Path is a tokenizer.json (its tokenizer_config.json beside it);
	// default: the policy folder's.
	Path string `mapstructure:"path"`
	// Train learns a byte-level BPE on the training split instead (for a
	// built-in policy), with ChatML's tokens and one token per tag.
	Train *TokenizerTrain `mapstructure:"train"`
	// ChatTemplate: auto (what tokenizer_config.json declares), chatml,
	// qwen3, qwen3-thinking, llama3, llama3.1, llama3.2, llama2,
	// mistral-v0.1, mistral, mistral-v0.2, mistral-v0.3 or zephyr
	// (tokenize.ChatFormatNames).
	ChatTemplate string `mapstructure:"chat_template"`
}

// TokenizerTrain sizes a trained tokenizer.
type TokenizerTrain struct {
	VocabSize int `mapstructure:"vocab_size"` // before the tag tokens
}

// DataConfig is where the examples come from: LaMP's download layout
// (LaMP_N/{train,dev,test}/{split}_questions.json and {split}_outputs.json),
// lamp_example files (Arrow or Parquet, e.g. from tagpr data import-lamp),
// or the built-in synthetic benchmark. Exactly one source.
type DataConfig struct {
	LaMPDir string       `mapstructure:"lamp_dir"`
	Tasks   []TaskRef    `mapstructure:"tasks"`  // with lamp_dir: 1, 2 (= 2M), 2N, 3 … 7
	Scheme  string       `mapstructure:"scheme"` // with lamp_dir: user or time (recorded on the rows)
	Imports []DataImport `mapstructure:"imports"`
	Synth   *SynthSource `mapstructure:"synth"`
	// MaxExamples keeps the first N examples of each task and split (0: all).
	MaxExamples int `mapstructure:"max_examples"`
}

// TaskRef names a task: a LaMP number (written 3 or "2N") or a task name.
type TaskRef string

// DataImport is one task's lamp_example files; Train is required.
type DataImport struct {
	Task  TaskRef `mapstructure:"task"`
	Train string  `mapstructure:"train"`
	Dev   string  `mapstructure:"dev"`
	Test  string  `mapstructure:"test"`
}

// SynthSource sizes the built-in synthetic benchmark (datasets.SynthConfig).
type SynthSource struct {
	Seed           uint64   `mapstructure:"seed"`
	Users          int      `mapstructure:"users"`
	QueriesPerUser int      `mapstructure:"queries_per_user"`
	ProfileMin     int      `mapstructure:"profile_min"`
	ProfileMax     int      `mapstructure:"profile_max"`
	Tasks          []string `mapstructure:"tasks"`
	DevFrac        float64  `mapstructure:"dev_frac"`
	TestFrac       float64  `mapstructure:"test_frac"`
	// TitleCloserMiss: the share of title chains whose teacher misses the
	// user's closing word (datasets.SynthConfig.TitleCloserMiss).
	TitleCloserMiss float64 `mapstructure:"title_closer_miss"`
}

func (s SynthSource) synthConfig() datasets.SynthConfig {
	return datasets.SynthConfig{Seed: s.Seed, Users: s.Users, QueriesPerUser: s.QueriesPerUser, ProfileMin: s.ProfileMin,
		ProfileMax: s.ProfileMax, Tasks: s.Tasks, DevFrac: s.DevFrac, TestFrac: s.TestFrac, TitleCloserMiss: s.TitleCloserMiss}
}

// RetrievalConfig is how the profile is put into prompts.
type RetrievalConfig struct {
	Method string `mapstructure:"method"` // bm25 or recency
	TopK   int    `mapstructure:"top_k"`  // profile items retrieved (0: all)
	// MaxPromptTokens is the prompt budget for SFT and evaluation; profile
	// items are dropped from the least relevant end to fit (0: none).
	MaxPromptTokens int `mapstructure:"max_prompt_tokens"`
}

func (r RetrievalConfig) promptOptions() PromptOptions {
	return PromptOptions{TopK: r.TopK, Retrieval: r.Method, MaxTokens: r.MaxPromptTokens}
}

// Teacher kinds.
const (
	TeacherGold   = "gold"   // the examples' own gold chains (the synthetic benchmark has them)
	TeacherOpenAI = "openai" // any OpenAI-compatible chat endpoint
	TeacherLocal  = "local"  // a local ONNX policy folder
)

// TeacherConfig is who writes the reasoning chains.
type TeacherConfig struct {
	Kind string `mapstructure:"kind"`
	// openai
	BaseURL     string        `mapstructure:"base_url"`
	Model       string        `mapstructure:"model"`
	APIKeyEnv   string        `mapstructure:"api_key_env"` // variable holding the key; "" sends none
	Timeout     time.Duration `mapstructure:"timeout"`     // per request, e.g. 2m
	MaxRetries  int           `mapstructure:"max_retries"`
	Concurrency int           `mapstructure:"concurrency"`
	// openai and local
	Temperature float64 `mapstructure:"temperature"`
	MaxTokens   int     `mapstructure:"max_tokens"`
	System      string  `mapstructure:"system"` // sent before each prompt
	// local
	Dir  string  `mapstructure:"dir"` // model folder with its tokenizer
	TopK int     `mapstructure:"top_k"`
	TopP float64 `mapstructure:"top_p"`
	Seed uint64  `mapstructure:"seed"`
	// Labeller tags free-form chains: rule or teacher.
	Labeller string `mapstructure:"labeller"`
}

// StagesConfig holds every stage's settings, in run order.
type StagesConfig struct {
	// KeepCheckpoints keeps a training stage's checkpoints (weights and
	// AdamW moments, the newest two) once its model is written; by default
	// they are deleted then, since nothing reads them (a finished stage is
	// never resumed) and a full fine-tune's take three times the model.
	KeepCheckpoints bool `mapstructure:"keep_checkpoints"`

	Chains  ChainsStage  `mapstructure:"chains"`
	SFT     SFTStage     `mapstructure:"sft"`
	PRMU    PRMUStage    `mapstructure:"prmu"`
	RL      []RLStage    `mapstructure:"rl"`
	Predict PredictStage `mapstructure:"predict"`
	Eval    EvalStage    `mapstructure:"eval"`
	Report  ReportStage  `mapstructure:"report"`
}

// ChainsStage asks the teacher for tagged chains on the training split.
type ChainsStage struct {
	Skip    bool        `mapstructure:"skip"` // no chains, and so no SFT
	Samples int         `mapstructure:"samples"`
	Batch   int         `mapstructure:"batch"`
	Filter  ChainFilter `mapstructure:"filter"`
	// Plain strips the step tags from gold chains (teacher.kind gold): SFT
	// on the same reasoning untagged, the recipe's no-tags ablation.
	Plain bool `mapstructure:"plain"`
}

// SFTStage fine-tunes the policy on the kept chains.
type SFTStage struct {
	Skip bool `mapstructure:"skip"`
	// TaskWeights repeats each named task's chains that many times in the
	// SFT data (a task left out: once; 0 leaves it out), so steps go where
	// a task still learns: the benchmark's tags are solved long before its
	// titles.
	TaskWeights TaskWeights `mapstructure:"task_weights"`
	SFTConfig   `mapstructure:",squash"`
}

// TaskWeights repeat each named task's examples that many times in a
// stage's data (a task left out: once; 0 leaves it out).
type TaskWeights map[string]int

// maxTaskWeight bounds task weights: more repeats than this is a typo, not
// a mix.
const maxTaskWeight = 16

// Repeats is how many times task's examples appear. Keys match task names
// without regard to case: config loaders lowercase map keys (LaMP_3
// arrives as lamp_3).
func (w TaskWeights) Repeats(task string) int {
	for name, n := range w {
		if strings.EqualFold(name, task) {
			return n
		}
	}
	return 1
}

// validate checks every weight names one of the run's tasks and is 0 to
// maxTaskWeight, and that some task keeps its examples; key is the
// weights' config key, data what they repeat ("its chains appear in the
// SFT data").
func (w TaskWeights) validate(key, data string, tasks []string) []error {
	if len(w) == 0 {
		return nil
	}
	var errs []error
	kept := 0
	for _, t := range tasks {
		if w.Repeats(t) > 0 {
			kept++
		}
	}
	for name, n := range w {
		if !slices.ContainsFunc(tasks, func(t string) bool { return strings.EqualFold(t, name) }) {
			errs = append(errs, fmt.Errorf("%s.%s: not a task of this run (its tasks: %s)", key, name, strings.Join(tasks, ", ")))
		}
		if n < 0 || n > maxTaskWeight {
			errs = append(errs, fmt.Errorf("%s.%s: %d: want 0 to %d (times %s)", key, name, n, maxTaskWeight, data))
		}
	}
	if kept == 0 {
		errs = append(errs, fmt.Errorf("%s: every task is 0: the stage would have no data", key))
	}
	return errs
}

// PRMUStage trains the personalization reward model.
type PRMUStage struct {
	Skip         bool    `mapstructure:"skip"` // the guided reward then leaves its PRMU term out
	Steps        int     `mapstructure:"steps"`
	PairsPerStep int     `mapstructure:"pairs_per_step"`
	LR           float64 `mapstructure:"lr"`
	Seed         uint64  `mapstructure:"seed"`
	Vocab        int     `mapstructure:"vocab"`
	Embed        int     `mapstructure:"embed"`
	Hidden       int     `mapstructure:"hidden"`
	MaxItems     int     `mapstructure:"max_items"`
	Pool         string  `mapstructure:"pool"` // mean or attention
	// Threads overrides runtime.threads for the PRMU's sessions (it scores
	// between generations, where one quiet thread is fastest).
	Threads int `mapstructure:"threads"`
	// PolicySamples, when > 0, samples that many completions per training
	// example from the SFT model and adds gold ≻ sample pairs for the
	// samples whose task reward is below 1.
	PolicySamples int `mapstructure:"policy_samples"`
	// Encoder, when set, reads texts with an exported sentence encoder
	// instead of the bag of tokens (rewardmodel.PRMUEncoder).
	Encoder *PRMUEncoderConfig `mapstructure:"encoder"`
}

// PRMUEncoderConfig is a sentence encoder exported with optimum-cli export
// onnx --task feature-extraction, frozen or tuned with LoRA.
type PRMUEncoderConfig struct {
	Dir       string `mapstructure:"dir"`
	Pooling   string `mapstructure:"pooling"`    // mean or cls ("": the export's 1_Pooling/config.json)
	MaxTokens int    `mapstructure:"max_tokens"` // per text (0: 128 or the model's limit)
	Tuning    string `mapstructure:"tuning"`     // frozen or lora
	LoRARank  int    `mapstructure:"lora_rank"`
	LoRASteps int    `mapstructure:"lora_steps"`
}

func (e *PRMUEncoderConfig) encoder() *rewardmodel.PRMUEncoder {
	if e == nil {
		return nil
	}
	return &rewardmodel.PRMUEncoder{Dir: e.Dir, Pooling: e.Pooling, MaxTokens: e.MaxTokens, Tuning: e.Tuning, LoRARank: e.LoRARank, LoRASteps: e.LoRASteps}
}

// Model names of the predict and eval stages.
const (
	ModelBase = "base" // the policy before training
	ModelSFT  = "sft"
	ModelRL   = "rl" // after the last RL stage; "rl:NAME" is after stage NAME
)

// PredictStage generates greedy predictions with each listed model.
type PredictStage struct {
	Models       []string `mapstructure:"models"` // base, sft, rl, rl:NAME (default: base, sft and every RL stage)
	Splits       []string `mapstructure:"splits"` // default dev
	Examples     int      `mapstructure:"examples"`
	Batch        int      `mapstructure:"batch"`
	MaxNewTokens int      `mapstructure:"max_new_tokens"`
}

// EvalStage scores the predictions against the golds, every model and
// rule baseline on the same examples, with bootstrap 95% intervals.
type EvalStage struct {
	Samples   int    `mapstructure:"samples"`   // correct and wrong chains shown per model and task in the report (each)
	Bootstrap int    `mapstructure:"bootstrap"` // resamples of the examples (0: 1000)
	Seed      uint64 `mapstructure:"seed"`      // of the resamples (0: derived from the run's seed)
}

// ReportStage writes report.md and report.json.
type ReportStage struct {
	Title string `mapstructure:"title"`
}

// DefaultRunConfig is what a config file's missing keys take.
func DefaultRunConfig() RunConfig {
	return RunConfig{
		Out:       "out/run",
		Seed:      1,
		Runtime:   RuntimeConfig{Provider: "cpu", GenerationDType: "float32", Spinning: ort.SpinAuto},
		Log:       LogConfig{Format: "auto"},
		Tokenizer: TokenizerConfig{ChatTemplate: "auto"},
		Data:      DataConfig{Scheme: "user"},
		Retrieval: RetrievalConfig{Method: "bm25", TopK: 8, MaxPromptTokens: 1024},
		Teacher: TeacherConfig{Kind: TeacherOpenAI, Timeout: 2 * time.Minute, MaxRetries: 4, Concurrency: 4,
			Temperature: 0.7, MaxTokens: 512, Labeller: "rule"},
		Stages: StagesConfig{
			Chains: ChainsStage{Samples: 1, Batch: 32},
			SFT: SFTStage{SFTConfig: SFTConfig{Steps: 200, Batch: 8, SeqLen: 1024, LR: 3e-4, Warmup: 10, Clip: 1,
				CheckpointEvery: 50}},
			PRMU:    PRMUStage{Steps: 1000, PairsPerStep: 32, LR: 3e-3, Vocab: 512, Pool: rewardmodel.PoolMean},
			Predict: PredictStage{Splits: []string{"dev"}, Batch: 16, MaxNewTokens: 256},
			Eval:    EvalStage{Samples: 2},
			Report:  ReportStage{Title: "tagpr run"},
		},
	}
}

// Validate checks everything that can be checked without reading a file,
// naming the key that is wrong.
func (c *RunConfig) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if c.Out == "" {
		bad("out", "empty: name the run folder")
	}
	if err := c.Runtime.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		bad("log.format", "%q: want auto, text or json", c.Log.Format)
	}
	// Policy and tokenizer.
	switch {
	case c.Policy.Dir == "" && c.Policy.Builtin == nil:
		bad("policy", "set policy.dir (an exported model folder) or policy.builtin")
	case c.Policy.Dir != "" && c.Policy.Builtin != nil:
		bad("policy", "set policy.dir or policy.builtin, not both")
	}
	if b := c.Policy.Builtin; b != nil {
		mc := b.lmConfig()
		mc.Vocab = 512 // checked against the tokenizer later
		if err := mc.Defaults().Validate(); err != nil {
			bad("policy.builtin", "%v", err)
		}
		if c.Tokenizer.Path == "" && c.Tokenizer.Train == nil {
			bad("tokenizer", "a built-in policy needs tokenizer.path or tokenizer.train")
		}
	}
	if c.Tokenizer.Train != nil {
		if c.Policy.Builtin == nil {
			bad("tokenizer.train", "only for a built-in policy (an exported model has its own tokenizer)")
		}
		if c.Tokenizer.Path != "" {
			bad("tokenizer", "set tokenizer.path or tokenizer.train, not both")
		}
		if v := c.Tokenizer.Train.VocabSize; v < 300 || v > 1<<20 {
			bad("tokenizer.train.vocab_size", "%d: want 300 to %d (256 bytes + merges)", v, 1<<20)
		}
	}
	if _, err := chatFormatNamed(c.Tokenizer.ChatTemplate); err != nil {
		bad("tokenizer.chat_template", "%v", err)
	}
	// Data.
	errs = append(errs, c.Data.validate()...)
	// Retrieval.
	if err := c.Retrieval.promptOptions().Validate(); err != nil {
		bad("retrieval", "%v", err)
	}
	// Teacher.
	if !c.Stages.Chains.Skip {
		errs = append(errs, c.Teacher.validate(c)...)
	}
	// Stages.
	if err := c.Stages.Chains.Filter.validate(); err != nil {
		bad("stages.chains.filter", "%v", err)
	}
	if c.Stages.Chains.Samples < 1 || c.Stages.Chains.Batch < 1 {
		bad("stages.chains", "samples %d, batch %d: want ≥ 1", c.Stages.Chains.Samples, c.Stages.Chains.Batch)
	}
	if c.Stages.Chains.Samples > 1 && c.Teacher.Kind != TeacherGold && c.Teacher.Temperature == 0 && !c.Stages.Chains.Skip {
		bad("stages.chains.samples", "%d with teacher.temperature 0: greedy decoding writes the same chain every time, so every sample after "+
			"the first is paid for and dropped as a duplicate; set teacher.temperature > 0 (e.g. 0.7) or samples 1", c.Stages.Chains.Samples)
	}
	if c.Stages.Chains.Plain && c.Teacher.Kind != TeacherGold {
		bad("stages.chains.plain", "strips the tags of gold chains: set teacher.kind gold (a teacher's chains are asked for with tags)")
	}
	if c.Stages.Chains.Skip && !c.Stages.SFT.Skip {
		bad("stages.sft.skip", "SFT trains on the chains, and stages.chains.skip is true: skip SFT too")
	}
	if !c.Stages.SFT.Skip {
		if err := c.Stages.SFT.Validate(); err != nil {
			bad("stages.sft", "%v", err)
		}
		errs = append(errs, c.Stages.SFT.TaskWeights.validate("stages.sft.task_weights", "its chains appear in the SFT data", c.Data.taskNames())...)
	}
	if p := c.Stages.PRMU; !p.Skip {
		if p.Steps < 1 || p.PairsPerStep < 1 || !(p.LR > 0) || !finite(p.LR) || p.Vocab < 300 || p.Threads < 0 || p.PolicySamples < 0 {
			bad("stages.prmu", "steps %d, pairs_per_step %d, lr %v, vocab %d, threads %d, policy_samples %d: want steps, pairs_per_step ≥ 1, a finite lr > 0, vocab ≥ 300, threads and policy_samples ≥ 0",
				p.Steps, p.PairsPerStep, p.LR, p.Vocab, p.Threads, p.PolicySamples)
		}
		if p.PolicySamples > 0 && c.Stages.SFT.Skip {
			bad("stages.prmu.policy_samples", "samples come from the SFT model, and stages.sft.skip is true")
		}
		if p.Encoder != nil && p.Encoder.Dir == "" {
			bad("stages.prmu.encoder.dir", "required with stages.prmu.encoder (an optimum-cli export onnx --task feature-extraction folder, or a BERT, RoBERTa, XLM-RoBERTa or MPNet transformers checkpoint)")
		}
		// Settings the encoder's PRMU does not read are refused, not
		// ignored (as prmu train's flags are).
		if e := p.Encoder; e != nil {
			if p.Embed != 0 {
				bad("stages.prmu.embed", "%d sizes the bag of tokens; with stages.prmu.encoder PRMU reads the encoder's embeddings (its own width): leave it out", p.Embed)
			}
			if e.Tuning != rewardmodel.TuneLoRA && (e.LoRARank != 0 || e.LoRASteps != 0) {
				bad("stages.prmu.encoder", "lora_rank %d, lora_steps %d: LoRA settings need tuning: lora (the encoder is frozen): set tuning: lora or leave them out", e.LoRARank, e.LoRASteps)
			}
		}
		if err := (rewardmodel.PRMUConfig{Vocab: p.Vocab, Embed: p.Embed, Hidden: p.Hidden, MaxItems: p.MaxItems, Pool: p.Pool, Encoder: p.Encoder.encoder()}).Defaults().Validate(); err != nil {
			bad("stages.prmu", "%v", err)
		}
	}
	names := map[string]bool{}
	for i, st := range c.Stages.RL {
		key := fmt.Sprintf("stages.rl[%d]", i)
		if st.Name == "" || st.Name == "." || st.Name == ".." || strings.ContainsAny(st.Name, `/\: `) {
			bad(key+".name", "%q: want a plain name (it names the stage's folder)", st.Name)
			continue
		}
		if names[st.Name] {
			bad(key+".name", "stage %q named twice", st.Name)
		}
		if st.From != "" && st.From != RLFromStart && !names[st.From] {
			bad(key+".from", "%q: want %s (the model RL starts from) or the name of an earlier stage", st.From, RLFromStart)
		}
		names[st.Name] = true
		if err := st.WithDefaults().Validate(); err != nil {
			bad(key, "%v", err)
		}
		errs = append(errs, st.TaskWeights.validate(key+".task_weights", "its prompts appear in the RL prompt pool", c.Data.taskNames())...)
		for name := range st.Rewards {
			if _, known := rewardOrder[name]; !known {
				bad(key+".rewards."+name, "unknown reward: want task, format, tag or prmu")
			} else if name == RewardPRMU && c.Stages.PRMU.Skip {
				bad(key+".rewards."+name, "the prmu stage is skipped: no PRMU to score with")
			}
		}
	}
	p := c.Stages.Predict
	for _, m := range p.Models {
		if err := c.checkModelName(m); err != nil {
			bad("stages.predict.models", "%v", err)
		}
	}
	for _, s := range p.Splits {
		if s != "train" && s != "dev" && s != "test" {
			bad("stages.predict.splits", "%q: want train, dev or test", s)
		}
	}
	if p.Examples < 0 || p.Batch < 1 || p.MaxNewTokens < 1 {
		bad("stages.predict", "examples %d, batch %d, max_new_tokens %d: want examples ≥ 0, batch and max_new_tokens ≥ 1", p.Examples, p.Batch, p.MaxNewTokens)
	}
	if c.Stages.Eval.Samples < 0 {
		bad("stages.eval.samples", "%d: want ≥ 0", c.Stages.Eval.Samples)
	}
	if b := c.Stages.Eval.Bootstrap; b != 0 && (b < 100 || b > 100000) {
		bad("stages.eval.bootstrap", "%d: want 100 to 100000 resamples (0: 1000)", b)
	}
	return errors.Join(errs...)
}

// Validate refuses providers ORT does not know, negative thread counts and
// unknown spinning and dtype choices.
func (r RuntimeConfig) Validate() error {
	switch strings.ToLower(r.Provider) {
	case "", "cpu", "cuda":
	default:
		return fmt.Errorf("runtime.provider: %q: want cpu or cuda", r.Provider)
	}
	if r.Threads < 0 {
		return fmt.Errorf("--threads (runtime.threads) %d: want ≥ 0 (0: one per core)", r.Threads)
	}
	if r.Threads > 4096 {
		return fmt.Errorf("--threads (runtime.threads) %d: want at most 4096", r.Threads)
	}
	if r.Device < 0 {
		return fmt.Errorf("runtime.device: %d: want a CUDA device ordinal ≥ 0", r.Device)
	}
	if err := r.Spinning.Validate(); err != nil {
		return err
	}
	switch r.GenerationDType {
	case "", "float32", "float16":
	default:
		return fmt.Errorf("--generation-dtype (runtime.generation_dtype) %q: want float32 or float16", r.GenerationDType)
	}
	if math.IsNaN(r.MaxMemoryGB) || math.IsInf(r.MaxMemoryGB, 0) || (r.MaxMemoryGB < 0 && r.MaxMemoryGB != -1) {
		return fmt.Errorf("runtime.max_memory_gb %v: want GiB ≥ 0 (0: the memory free when it starts), or -1 for no check", r.MaxMemoryGB)
	}
	return nil
}

// taskNames are the canonical names of the tasks the data config reads
// (unparseable ones are left to validate).
func (d DataConfig) taskNames() []string {
	var refs []string
	for _, t := range d.Tasks {
		refs = append(refs, string(t))
	}
	for _, im := range d.Imports {
		refs = append(refs, string(im.Task))
	}
	if d.Synth != nil {
		refs = append(refs, d.Synth.synthConfig().Tasks...)
	}
	var out []string
	for _, r := range refs {
		if t, err := datasets.ParseTask(r); err == nil {
			out = append(out, t.Name)
		}
	}
	return out
}

func (d DataConfig) validate() []error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	sources := 0
	for _, set := range []bool{d.LaMPDir != "", len(d.Imports) > 0, d.Synth != nil} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		bad("data", "set exactly one of data.lamp_dir, data.imports and data.synth (%d set)", sources)
	}
	if d.LaMPDir != "" {
		if len(d.Tasks) == 0 {
			bad("data.tasks", "list the LaMP tasks to read from data.lamp_dir, e.g. [2, 3, 4]")
		}
		if d.Scheme != "user" && d.Scheme != "time" {
			bad("data.scheme", "%q: want user or time", d.Scheme)
		}
	} else {
		if len(d.Tasks) > 0 {
			bad("data.tasks", "only with data.lamp_dir")
		}
		if d.Scheme != "user" { // the default; another value would be ignored
			bad("data.scheme", "%q: only with data.lamp_dir (imported files carry the scheme tagpr data import-lamp --scheme gave them; the synthetic benchmark has none)", d.Scheme)
		}
	}
	seen := map[string]bool{}
	for i, t := range d.Tasks {
		task, err := datasets.ParseTask(string(t))
		if err != nil {
			bad(fmt.Sprintf("data.tasks[%d]", i), "%v", err)
			continue
		}
		if seen[task.Name] {
			bad(fmt.Sprintf("data.tasks[%d]", i), "task %s listed twice", task.Name)
		}
		seen[task.Name] = true
	}
	for i, im := range d.Imports {
		key := fmt.Sprintf("data.imports[%d]", i)
		task, err := datasets.ParseTask(string(im.Task))
		if err != nil {
			bad(key+".task", "%v", err)
		} else if seen[task.Name] {
			bad(key+".task", "task %s listed twice", task.Name)
		} else {
			seen[task.Name] = true
		}
		if im.Train == "" {
			bad(key+".train", "required (the training split's lamp_example file)")
		}
	}
	if d.Synth != nil {
		sc := d.Synth.synthConfig()
		if _, err := datasets.Synth(datasets.SynthConfig{Seed: sc.Seed, Users: 3, QueriesPerUser: 1, ProfileMin: 3, ProfileMax: 3,
			Tasks: sc.Tasks, DevFrac: sc.DevFrac, TestFrac: sc.TestFrac}); err != nil {
			bad("data.synth", "%v", err)
		}
		if sc.Users < 3 || sc.QueriesPerUser < 1 || sc.ProfileMin < 3 || sc.ProfileMax < sc.ProfileMin {
			bad("data.synth", "users %d, queries_per_user %d, profile [%d, %d]: want users ≥ 3, queries ≥ 1, 3 ≤ profile_min ≤ profile_max",
				sc.Users, sc.QueriesPerUser, sc.ProfileMin, sc.ProfileMax)
		}
		if !(sc.TitleCloserMiss >= 0 && sc.TitleCloserMiss <= 1) { // NaN fails too
			bad("data.synth.title_closer_miss", "%v: want a share in [0, 1] (0: the teacher never misses)", sc.TitleCloserMiss)
		}
	}
	if d.MaxExamples < 0 {
		bad("data.max_examples", "%d: want ≥ 0 (0: all)", d.MaxExamples)
	}
	return errs
}

func (t TeacherConfig) validate(c *RunConfig) []error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	switch t.Kind {
	case TeacherGold:
		if c.Data.Synth == nil {
			bad("teacher.kind", "gold: only the synthetic benchmark (data.synth) carries gold chains; use openai or local")
		}
	case TeacherOpenAI:
		if !strings.HasPrefix(t.BaseURL, "http://") && !strings.HasPrefix(t.BaseURL, "https://") {
			bad("teacher.base_url", "%q: want an http:// or https:// URL of an OpenAI-compatible endpoint", t.BaseURL)
		}
		if t.Model == "" {
			bad("teacher.model", "required with teacher.kind openai")
		}
		if t.Timeout <= 0 || t.Concurrency < 1 || t.MaxRetries < 0 {
			bad("teacher", "timeout %s, concurrency %d, max_retries %d: want timeout > 0, concurrency ≥ 1, max_retries ≥ 0", t.Timeout, t.Concurrency, t.MaxRetries)
		}
	case TeacherLocal:
		if t.Dir == "" {
			bad("teacher.dir", "required with teacher.kind local (an ONNX model folder or a transformers checkpoint, with its tokenizer.json)")
		}
	default:
		bad("teacher.kind", "%q: want gold, openai or local", t.Kind)
	}
	if t.Labeller != "rule" && t.Labeller != "teacher" {
		bad("teacher.labeller", "%q: want rule or teacher", t.Labeller)
	}
	if t.Labeller == "teacher" && t.Kind == TeacherGold {
		bad("teacher.labeller", "teacher needs an openai or local teacher")
	}
	if !(t.Temperature >= 0) || math.IsInf(t.Temperature, 0) || t.MaxTokens < 1 || t.TopK < 0 || !(t.TopP >= 0 && t.TopP <= 1) { // NaN fails too
		bad("teacher", "temperature %v, max_tokens %d, top_k %d, top_p %v: want temperature ≥ 0, max_tokens ≥ 1, top_k ≥ 0, top_p in [0, 1]",
			t.Temperature, t.MaxTokens, t.TopK, t.TopP)
	}
	return errs
}

func (f ChainFilter) validate() error {
	switch {
	case f.MinReward < 0 || f.MinReward > 1 || math.IsNaN(f.MinReward) || f.GenerationMinReward < 0 || f.GenerationMinReward > 1 || math.IsNaN(f.GenerationMinReward):
		return fmt.Errorf("min_reward %v, generation_min_reward %v: want values in [0, 1]", f.MinReward, f.GenerationMinReward)
	case f.MinSteps < 0 || f.MaxSteps < 0 || f.MaxChars < 0 || (f.MaxSteps > 0 && f.MinSteps > f.MaxSteps):
		return fmt.Errorf("min_steps %d, max_steps %d, max_chars %d: want ≥ 0 and min_steps ≤ max_steps", f.MinSteps, f.MaxSteps, f.MaxChars)
	}
	return nil
}

// checkModelName accepts base, sft, rl and rl:NAME of a configured stage.
func (c *RunConfig) checkModelName(m string) error {
	switch {
	case m == ModelBase:
		return nil
	case m == ModelSFT:
		if c.Stages.SFT.Skip {
			return fmt.Errorf("%q: stages.sft.skip is true", m)
		}
		return nil
	case m == ModelRL:
		if len(c.Stages.RL) == 0 {
			return fmt.Errorf("%q: no RL stage is configured", m)
		}
		return nil
	case strings.HasPrefix(m, ModelRL+":"):
		name := strings.TrimPrefix(m, ModelRL+":")
		for _, st := range c.Stages.RL {
			if st.Name == name {
				return nil
			}
		}
		return fmt.Errorf("%q: no RL stage named %q", m, name)
	}
	return fmt.Errorf("%q: want base, sft, rl or rl:NAME", m)
}

// predictModels are the models predictions are made with, in training order.
func (c *RunConfig) predictModels() []string {
	if len(c.Stages.Predict.Models) > 0 {
		return c.Stages.Predict.Models
	}
	out := []string{ModelBase}
	if !c.Stages.SFT.Skip {
		out = append(out, ModelSFT)
	}
	for _, st := range c.Stages.RL {
		out = append(out, ModelRL+":"+st.Name)
	}
	return out
}

// Resolve makes relative paths absolute against base (the config file's
// folder for paths from a file) so a run does not depend on where it is
// started from.
func (c *RunConfig) Resolve(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.Out)
	abs(&c.Policy.Dir)
	abs(&c.Tokenizer.Path)
	abs(&c.Taxonomy)
	abs(&c.Data.LaMPDir)
	for i := range c.Data.Imports {
		abs(&c.Data.Imports[i].Train)
		abs(&c.Data.Imports[i].Dev)
		abs(&c.Data.Imports[i].Test)
	}
	abs(&c.Teacher.Dir)
	if c.Stages.PRMU.Encoder != nil {
		abs(&c.Stages.PRMU.Encoder.Dir)
	}
}

// The offsets each stage's derived seed takes from the run's seed
// (stageSeed): the stages and Effective use the same ones.
const (
	seedSFT     = 11
	seedRL      = 21 // + the RL stage's index
	seedPRMU    = 31
	seedEval    = 41
	seedTeacher = 101
)

// stageSeed is a stage's seed: its own, else derived from the run's.
func (c *RunConfig) stageSeed(own uint64, offset uint64) uint64 {
	if own != 0 {
		return own
	}
	return c.Seed*0x9e3779b97f4a7c15 + offset
}

// Effective is c with the values its stages use where a 0 picks one: the
// stage seeds derived from the run's seed, the chain filter's defaults, the
// bootstrap's resample count and the PRMU's sizes (what `tagpr config print`
// shows). Running it behaves as c does.
func (c RunConfig) Effective() RunConfig {
	c.Stages.Chains.Filter = c.Stages.Chains.Filter.withDefaults()
	if c.Stages.Eval.Bootstrap == 0 {
		c.Stages.Eval.Bootstrap = DefaultResamples
	}
	p := &c.Stages.PRMU
	d := rewardmodel.PRMUConfig{Embed: p.Embed, Hidden: p.Hidden, MaxItems: p.MaxItems, Pool: p.Pool, Encoder: p.Encoder.encoder()}.Defaults()
	p.Embed, p.Hidden, p.MaxItems, p.Pool = d.Embed, d.Hidden, d.MaxItems, d.Pool
	if p.Encoder != nil {
		e := *p.Encoder
		e.Tuning, e.LoRARank, e.LoRASteps = d.Encoder.Tuning, d.Encoder.LoRARank, d.Encoder.LoRASteps
		p.Encoder = &e
	}
	if b := c.Policy.Builtin; b != nil && b.InitStd == 0 {
		nb := *b
		nb.InitStd = lm.DefaultInitStd
		c.Policy.Builtin = &nb
	}
	c.Teacher.Seed = c.stageSeed(c.Teacher.Seed, seedTeacher)
	c.Stages.SFT.Seed = c.stageSeed(c.Stages.SFT.Seed, seedSFT)
	c.Stages.SFT.LoRASettings = c.Stages.SFT.withAlpha()
	c.Stages.PRMU.Seed = c.stageSeed(c.Stages.PRMU.Seed, seedPRMU)
	c.Stages.Eval.Seed = c.stageSeed(c.Stages.Eval.Seed, seedEval)
	c.Stages.RL = append([]RLStage(nil), c.Stages.RL...)
	for i := range c.Stages.RL {
		c.Stages.RL[i] = c.Stages.RL[i].WithDefaults() // temperature 0 runs at 1, as TRL's default
		c.Stages.RL[i].Seed = c.stageSeed(c.Stages.RL[i].Seed, seedRL+uint64(i))
		c.Stages.RL[i].LoRASettings = c.Stages.RL[i].withAlpha()
	}
	return c
}

// FastDevRun is the config cut to a handful of examples and steps per
// stage, in its own folder (Out/fast_dev_run): a config tried end to end
// in about a minute, as Lightning's fast_dev_run.
func (c RunConfig) FastDevRun() RunConfig {
	c.Out = filepath.Join(c.Out, "fast_dev_run")
	c.Data.MaxExamples = 8 // two users of the synthetic benchmark: PRMU pairs need another user
	c.Stages.Chains.Batch = min(c.Stages.Chains.Batch, 4)
	c.Stages.Chains.Samples = 1
	sft := &c.Stages.SFT.SFTConfig
	sft.Steps, sft.Batch, sft.Warmup, sft.CheckpointEvery = 2, 2, 0, 1
	c.Stages.PRMU.Steps, c.Stages.PRMU.PairsPerStep = 4, min(c.Stages.PRMU.PairsPerStep, 8)
	c.Stages.PRMU.PolicySamples = min(c.Stages.PRMU.PolicySamples, 2)
	rl := make([]RLStage, len(c.Stages.RL))
	for i, st := range c.Stages.RL {
		st.Steps, st.PromptsPerStep, st.NumGenerations, st.Warmup, st.CheckpointEvery = 1, 2, 2, 0, 1
		st.MaxCompletionLength = min(st.MaxCompletionLength, 16)
		rl[i] = st
	}
	c.Stages.RL = rl
	c.Stages.Predict.Examples, c.Stages.Predict.MaxNewTokens = 2, min(c.Stages.Predict.MaxNewTokens, 16)
	c.Teacher.MaxTokens = min(c.Teacher.MaxTokens, 256)
	return c
}

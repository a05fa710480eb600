package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/pipeline"
)

func init() {
	var o stageFlags
	chainsCmd := &cobra.Command{
		Use:   "chains [-c FILE]",
		Short: "Stage 1: tagged reasoning chains from a teacher (the config's chains stage; generate: one examples file)",
		Long: "Asks the config's teacher for a tagged chain per training example of every task, labels and filters them, and writes\n" +
			"OUT/chains/TASK.parquet. `tagpr chains generate` does the same for one examples file, configured by flags (the taxonomy is the config's).\n\n" + runLong,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runStages(cmd, o, pipeline.StageChains) },
	}
	addStageFlags(chainsCmd, &o, "out")
	chainsCmd.AddCommand(chainsGenerateCmd(), chainsMergeCmd())
	rootCmd.AddCommand(chainsCmd)
}

type chainsFlags struct {
	examples, out, teacher, labeller, shard, system, retrieval string
	samples, batch, topKProfile                                int
	// openai
	baseURL, model, apiKeyEnv string
	concurrency, retries      int
	timeout                   time.Duration
	// shared sampling
	temperature, topP float64
	maxTokens, topK   int
	// local
	policy, tokenizer string
	seed              uint64
	// filter
	filter pipeline.ChainFilter
}

func chainsGenerateCmd() *cobra.Command {
	var o chainsFlags
	c := &cobra.Command{
		Use:   "generate",
		Short: "Ask a teacher for reasoning chains, tag them, filter them, and write every row to Arrow",
		Long: `Streams an examples file (lamp_example, .arrow or .parquet) in batches, asks the teacher for a
chain per example (--samples per example), validates chains that already carry tags, splits free-form
ones into steps and labels each step (--labeller rule: keyword/position rules; teacher: the teacher
labels them), then filters: answer correct (exact for classification and rating, ROUGE-L >=
--generation-min-reward for generation), tags valid, length bounds, duplicates. Kept and rejected
rows both land in --out (tagged_chain schema) with their verdicts and provenance.

Each batch is written atomically to OUT.parts/: an interrupted run resumes where it stopped when started
again with the same --out (the OpenAI teacher's replies to an unfinished batch that came back wait in
OUT.parts/pending-*.json and are not paid for again). With --shard i/N (or --shard auto in a Kubernetes Indexed Job: the index from
$JOB_COMPLETION_INDEX, the count from $TAGPR_SHARD_COUNT) only that shard's examples are done, every
worker writing its own parts into the same OUT.parts/ on a shared volume; a restarted worker redoes only
what its shard has no part for. ` + "`tagpr chains merge`" + ` then writes OUT, deciding duplicates across
shards: the same bytes as one unsharded run.

The OpenAI teacher reads its key from the environment variable named by --api-key-env.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			tx, err := pipeline.LoadTaxonomy(runCfg.Taxonomy)
			if err != nil {
				return err
			}
			cfg := pipeline.ChainsConfig{Examples: o.examples, Out: o.out, Samples: o.samples, Batch: o.batch, Taxonomy: tx,
				System: o.system, Filter: o.filter, Prompt: pipeline.PromptOptions{TopK: o.topKProfile, Retrieval: o.retrieval}}
			sh, err := datasets.ParseShardFlag(o.shard)
			if err != nil {
				return err
			}
			cfg.Shard = sh
			if err := checkPinned(o.examples); err != nil {
				return err
			}
			switch o.teacher {
			case "openai":
				if o.baseURL == "" || o.model == "" {
					return fmt.Errorf("--teacher openai needs --base-url and --model")
				}
				retries := o.retries
				if retries == 0 {
					retries = -1 // OpenAIConfig's 0 means its default; --retries 0 means none
				}
				t, err := pipeline.NewOpenAITeacher(pipeline.OpenAIConfig{BaseURL: o.baseURL, Model: o.model, APIKeyEnv: o.apiKeyEnv,
					Temperature: o.temperature, MaxTokens: o.maxTokens, Timeout: o.timeout, MaxRetries: retries, Concurrency: o.concurrency,
					BaseURLKey: "--base-url", ModelKey: "--model"})
				if err != nil {
					return err
				}
				cfg.Teacher = t
			case "local":
				t, closeFn, err := localTeacher(o)
				if err != nil {
					return err
				}
				defer closeFn()
				cfg.Teacher = t
			default:
				return fmt.Errorf("--teacher %q: want openai or local", o.teacher)
			}
			switch o.labeller {
			case "rule":
			case "teacher":
				cfg.Labeller = pipeline.TeacherLabeller{Teacher: cfg.Teacher, Taxonomy: cfg.Taxonomy}
			default:
				return fmt.Errorf("--labeller %q: want rule or teacher", o.labeller)
			}
			cfg.Settings = map[string]any{"temperature": o.temperature, "max_tokens": o.maxTokens}
			if o.teacher == "local" {
				cfg.Settings["top_k"], cfg.Settings["top_p"], cfg.Settings["seed"] = o.topK, o.topP, o.seed
			}
			cfg.Progress = reporter("rows")
			st, err := pipeline.GenerateChains(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if !st.Merged {
				fmt.Fprintf(cmd.OutOrStdout(), "chains: shard %s: %d examples done now, %d done before, %d rows in %s.parts; when every shard is done: tagpr chains merge --examples %s --out %s\n",
					sh, st.Done, st.Skipped, st.Rows, o.out, o.examples, o.out)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "chains: %d examples done now, %d done before; %s holds %d rows, %d kept (teacher %s)\n",
				st.Done, st.Skipped, o.out, st.Rows, st.Kept, cfg.Teacher.Name())
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.examples, "examples", "", "examples file (lamp_example schema, .arrow or .parquet)")
	f.StringVar(&o.out, "out", "", "tagged_chain file to write (.arrow or .parquet); parts go to OUT.parts")
	f.StringVar(&o.teacher, "teacher", "openai", "teacher: openai (any OpenAI-compatible chat endpoint) or local (an ONNX policy)")
	f.StringVar(&o.labeller, "labeller", "rule", "labeller for free-form chains: rule or teacher")
	f.StringVar(&o.shard, "shard", "", "only this shard of the examples: i/N, or auto ($JOB_COMPLETION_INDEX of $TAGPR_SHARD_COUNT)")
	f.StringVar(&o.system, "system", "", "system message sent before each prompt")
	f.IntVar(&o.samples, "samples", 1, "teacher samples per example")
	f.IntVar(&o.batch, "batch", 32, "examples per teacher batch (and per part file)")
	f.IntVar(&o.topKProfile, "profile-k", 8, "profile items in each prompt (most relevant first; 0: all)")
	f.StringVar(&o.retrieval, "retrieval", "bm25", "profile retrieval: bm25 or recency")
	f.StringVar(&o.baseURL, "base-url", "", "openai: base URL, e.g. https://api.openai.com/v1")
	f.StringVar(&o.model, "model", "", "openai: model name")
	f.StringVar(&o.apiKeyEnv, "api-key-env", "OPENAI_API_KEY", "openai: environment variable holding the API key (\"\": send none)")
	f.IntVar(&o.concurrency, "concurrency", 4, "openai: requests in flight")
	f.IntVar(&o.retries, "retries", 4, "openai: retries after a 429, a 5xx or a network error (backoff doubles from 1s; 0: one request only)")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "openai: timeout per request")
	f.Float64Var(&o.temperature, "temperature", 0.7, "sampling temperature (0: greedy)")
	f.IntVar(&o.maxTokens, "max-tokens", 512, "completion budget in tokens")
	f.IntVar(&o.topK, "top-k", 0, "local: top-k sampling (0: off)")
	f.Float64Var(&o.topP, "top-p", 0, "local: nucleus sampling (0: off)")
	f.StringVar(&o.policy, "policy", "", "local: model directory (model.onnx, config.json)")
	f.StringVar(&o.tokenizer, "tokenizer", "", "local: tokenizer.json (default: POLICY/tokenizer.json)")
	f.Uint64Var(&o.seed, "seed", 1, "local: sampling seed")
	f.Float64Var(&o.filter.MinReward, "min-reward", 0, "task reward an answer needs (0: exact for classification/rating)")
	f.Float64Var(&o.filter.GenerationMinReward, "generation-min-reward", 0.5, "ROUGE-L F1 a generation answer needs")
	f.IntVar(&o.filter.MinSteps, "min-steps", 2, "fewest tagged steps kept")
	f.IntVar(&o.filter.MaxSteps, "max-steps", 16, "most tagged steps kept")
	f.IntVar(&o.filter.MaxChars, "max-chars", 6000, "longest chain kept, in bytes")
	f.BoolVar(&o.filter.KeepDuplicates, "keep-duplicates", false, "keep chains whose text an earlier kept chain has")
	c.MarkFlagRequired("examples")
	c.MarkFlagRequired("out")
	return c
}

// validate range-checks the flags (the pipeline would take a zero for its
// default silently).
func (o chainsFlags) validate() error {
	return checkFlags("chains generate",
		atLeast("--samples", o.samples, 1), atLeast("--batch", o.batch, 1),
		flagCheck{"--samples", o.samples, o.samples == 1 || o.temperature > 0,
			"1 with --temperature 0 (greedy decoding writes the same chain every time: every further sample is paid for and dropped as a duplicate)"}, atLeast("--profile-k", o.topKProfile, 0),
		atLeast("--concurrency", o.concurrency, 1), atLeast("--retries", o.retries, 0),
		flagCheck{"--timeout", o.timeout, o.timeout > 0, "a duration > 0"},
		nonNegative("--temperature", o.temperature), atLeast("--max-tokens", o.maxTokens, 1),
		atLeast("--top-k", o.topK, 0), within("--top-p", o.topP, 0, 1),
		within("--min-reward", o.filter.MinReward, 0, 1), within("--generation-min-reward", o.filter.GenerationMinReward, 0, 1),
		atLeast("--min-steps", o.filter.MinSteps, 1), atLeast("--max-steps", o.filter.MaxSteps, max(o.filter.MinSteps, 1)),
		atLeast("--max-chars", o.filter.MaxChars, 1))
}

func chainsMergeCmd() *cobra.Command {
	var examples, out string
	var keepDuplicates bool
	c := &cobra.Command{
		Use:   "merge --examples F --out OUT",
		Short: "Assemble the parts every shard's worker wrote in OUT.parts/ into OUT, in the examples' order",
		Long: `Writes OUT from OUT.parts/ (the part files of every ` + "`chains generate --shard`" + ` worker), in the examples'
order, deciding duplicates across shards: the same bytes as one unsharded run. Refuses while any example
has no rows yet (a worker still running or failed: run it again, it redoes only its missing part).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkPinned(examples); err != nil {
				return err
			}
			st, err := pipeline.MergeChains(examples, out, keepDuplicates)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "chains: %s holds %d rows, %d kept\n", out, st.Rows, st.Kept)
			return nil
		},
	}
	c.Flags().StringVar(&examples, "examples", "", "the examples file the workers read (its order is the output's)")
	c.Flags().StringVar(&out, "out", "", "tagged_chain file to write; parts are read from OUT.parts/")
	c.Flags().BoolVar(&keepDuplicates, "keep-duplicates", false, "keep chains whose text an earlier kept chain has")
	c.MarkFlagRequired("examples")
	c.MarkFlagRequired("out")
	return c
}

// localTeacher opens --policy with its tokenizer; closeFn releases the model.
func localTeacher(o chainsFlags) (*pipeline.LocalTeacher, func(), error) {
	if o.policy == "" {
		return nil, nil, fmt.Errorf("--teacher local needs --policy DIR")
	}
	if err := initRuntime(); err != nil {
		return nil, nil, err
	}
	tokPath := o.tokenizer
	if tokPath == "" {
		tokPath = filepath.Join(o.policy, "tokenizer.json")
	}
	tok, err := loadTokenizer(tokPath)
	if err != nil {
		return nil, nil, fmt.Errorf("local teacher: %w", err)
	}
	t, err := pipeline.OpenLocalTeacher(o.policy, tok, sessionOptions(), lm.Sampling{Temperature: o.temperature, TopK: o.topK, TopP: o.topP}, o.maxTokens, o.seed)
	if err != nil {
		return nil, nil, err
	}
	return t, func() { t.Close() }, nil
}

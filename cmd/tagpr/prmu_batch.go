package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/pipeline"
	"github.com/tagpr/tagpr/rewardmodel"
)

// openPRMU starts the runtime and loads a PRMU directory, its files checked
// against their pins.
func openPRMU(dir string) (*rewardmodel.PRMU, error) {
	if err := initRuntime(); err != nil {
		return nil, err
	}
	if err := checkPinned(filepath.Join(dir, rewardmodel.PRMUModelFile), filepath.Join(dir, rewardmodel.PRMUTokenizerFile),
		filepath.Join(dir, rewardmodel.PRMUConfigFile)); err != nil {
		return nil, err
	}
	return rewardmodel.LoadPRMU(dir, sessionOptions())
}

func prmuScorePredictionsCmd() *cobra.Command {
	var model, shard string
	var cfg pipeline.PRMUScoreConfig
	c := &cobra.Command{
		Use:   "score-predictions --model DIR --examples F --predictions P --out O",
		Short: "Score every answer of a predictions file with PRMU, for its example's user (shardable)",
		Long: `Appends prmu_score (the raw score) and r_prmu (sigmoid) to each prediction's metrics; an unparseable
prediction gets r_prmu 0 and no score. Profile items are chosen as the prompts choose them (--profile-k,
--retrieval). Batches land atomically in O.parts/, so a rerun resumes; O.parts/run.json records what the
scores depend on (the PRMU's files and the examples and predictions by content, --profile-k, --retrieval), and
a rerun with any of them changed is refused, naming it (delete O.parts/ to score anew). With --shard i/N (or auto, in a
Kubernetes Indexed Job) only that shard is scored and O is left to ` + "`tagpr data merge --out O --order P`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Every check that needs no work comes first: a bad --out or
			// --batch is refused before a part is scored.
			if _, err := datasets.FormatOf(cfg.Out); err != nil {
				return fmt.Errorf("prmu score-predictions: --out %w", err)
			}
			if err := checkFlags("prmu score-predictions", atLeast("--batch", cfg.Batch, 1), atLeast("--profile-k", cfg.Prompt.TopK, 0)); err != nil {
				return err
			}
			sh, err := datasets.ParseShardFlag(shard)
			if err != nil {
				return err
			}
			cfg.Shard = sh
			if err := checkPinned(cfg.Examples, cfg.Predictions); err != nil {
				return err
			}
			p, err := openPRMU(model)
			if err != nil {
				return err
			}
			defer p.Close()
			cfg.PRMU, cfg.Model = p, model
			st, err := pipeline.ScorePRMU(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			where := cfg.Out
			if !st.Merged {
				where = fmt.Sprintf("%s.parts (shard %s; when every shard is done: tagpr data merge --out %s --order %s)", cfg.Out, sh, cfg.Out, cfg.Predictions)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "prmu score: %d predictions scored now, %d before; %s\n", st.Done, st.Skipped, where)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&model, "model", "", "PRMU directory (from prmu train)")
	f.StringVar(&cfg.Examples, "examples", "", "examples file (lamp_example): the users' profiles")
	f.StringVar(&cfg.Predictions, "predictions", "", "predictions file whose answers are scored")
	f.StringVar(&cfg.Out, "out", "", "predictions file to write (.arrow or .parquet); parts go to OUT.parts")
	f.StringVar(&shard, "shard", "", "only this shard: i/N, or auto ($JOB_COMPLETION_INDEX of $TAGPR_SHARD_COUNT)")
	f.IntVar(&cfg.Batch, "batch", 64, "predictions per batch (and per part file)")
	f.IntVar(&cfg.Prompt.TopK, "profile-k", 8, "profile items per user (most relevant first; 0: all)")
	f.StringVar(&cfg.Prompt.Retrieval, "retrieval", "bm25", "profile retrieval: bm25 or recency")
	for _, r := range []string{"model", "examples", "predictions", "out"} {
		c.MarkFlagRequired(r)
	}
	return c
}

package main

import (
	"errors"
	"fmt"
	"github.com/apache/arrow-go/v18/arrow/array"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/datasets"
)

// splitFromLaMPNames sets split (the command's --split) from LaMP's file
// names ({split}_questions.json, {split}_outputs.json) when --split is left
// out, and refuses a --split that a file's name contradicts. flagPaths are
// flag, path pairs.
func splitFromLaMPNames(cmd *cobra.Command, command string, split *string, flagPaths ...string) error {
	for i := 0; i+1 < len(flagPaths); i += 2 {
		flag, path := flagPaths[i], flagPaths[i+1]
		base := filepath.Base(path)
		named, ok := strings.CutSuffix(base, "_questions.json")
		if !ok {
			named, ok = strings.CutSuffix(base, "_outputs.json")
		}
		if !ok || !slices.Contains(datasets.Splits, named) || named == *split {
			continue
		}
		if cmd.Flags().Changed("split") {
			return fmt.Errorf("%s: --split %s, but %s %s is LaMP's %s file by its name: give --split %s (or rename the file)", command, *split, flag, path, named, named)
		}
		*split = named
	}
	return nil
}

func init() {
	dataCmd := &cobra.Command{Use: "data", Short: "Datasets in Arrow: LaMP import/export, shards, merge, the synthetic benchmark"}
	dataCmd.AddCommand(importLaMPCmd(), exportLaMPCmd(), exportPredictionsCmd(), mergeCmd(), shardCmd(), infoCmd(), synthCmd())
	rootCmd.AddCommand(dataCmd)
}

func importLaMPCmd() *cobra.Command {
	var o datasets.ImportOptions
	var task string
	var force bool
	c := &cobra.Command{
		Use:   "import-lamp",
		Short: "Import a LaMP questions file (and its outputs file) into Arrow IPC (.arrow) or Parquet (.parquet)",
		Long: `Streams a LaMP {split}_questions.json into one Arrow or Parquet file, joining the golds of
{split}_outputs.json by id. Tasks: 1, 2M (movie tagging; "2" means 2M), 2N (the original news
categorization), 3, 4, 5, 6, 7. --scheme records which of LaMP's splits the files come from
(user-based or time-based).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) (runErr error) {
			defer func() { runErr = keepsNothing(runErr) }() // an interrupted import leaves no file: a rerun starts over
			t, err := datasets.ParseTask(task)
			if err != nil {
				return err
			}
			o.Task, o.Context = t, cmd.Context()
			// LaMP names its files by split: train_questions.json left
			// without --split was imported as dev.
			if err := splitFromLaMPNames(cmd, "data import-lamp", &o.Split, "--questions", o.Questions, "--outputs", o.Outputs); err != nil {
				return err
			}
			if err := checkFlags("data import-lamp", atLeast("--batch-rows", o.BatchRows, 1)); err != nil {
				return err
			}
			if err := checkPinned(o.Questions, o.Outputs); err != nil {
				return err
			}
			if err := prepareOutput(o.Out, force); err != nil {
				return err
			}
			var bar *progress
			o.Progress = func(read, size int64) { // MB of the questions file: a 1 GB LaMP-5 train file takes a while
				if bar == nil {
					bar = newProgress("import-lamp MB", int(size>>20))
				}
				bar.Step(int(read>>20) - bar.done)
			}
			st, err := datasets.ImportLaMP(o)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d %s %s examples (%d bytes of questions) to %s\n", st.Examples, t.Name, o.Split, st.Bytes, o.Out)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&task, "task", "", "LaMP task: 1, 2M, 2N, 3, 4, 5, 6 or 7")
	f.StringVar(&o.Questions, "questions", "", "questions file ({split}_questions.json)")
	f.StringVar(&o.Outputs, "outputs", "", "outputs file ({split}_outputs.json); omit for the test split")
	f.StringVar(&o.Split, "split", "dev", "split name: train, dev or test (default: the one LaMP's file name says, {split}_questions.json, else dev)")
	f.StringVar(&o.Scheme, "scheme", "user", "LaMP split scheme: user or time")
	f.StringVar(&o.Out, "out", "", "output file: .arrow (Arrow IPC) or .parquet")
	f.IntVar(&o.BatchRows, "batch-rows", datasets.DefaultBatchRows, "rows per record batch")
	f.BoolVar(&force, "force", false, "overwrite --out if it exists")
	for _, r := range []string{"task", "questions", "out"} {
		c.MarkFlagRequired(r)
	}
	return c
}

func exportLaMPCmd() *cobra.Command {
	var in, questions, outputs string
	var force bool
	c := &cobra.Command{
		Use:   "export-lamp",
		Short: "Write an examples file back as LaMP questions (and outputs) JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, p := range []string{questions, outputs} {
				if err := prepareOutput(p, force); err != nil {
					return err
				}
			}
			st, err := datasets.ExportLaMP(in, questions, outputs)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %d questions to %s", st.Questions, questions)
			if outputs != "" {
				fmt.Fprintf(cmd.OutOrStdout(), " and %d golds to %s", st.Golds, outputs)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			if outputs != "" && st.Golds < st.Questions {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %d of the %d questions of %s have no gold (no output); %s lists the other %d\n",
					st.Questions-st.Golds, st.Questions, in, outputs, st.Golds)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "overwrite the output files if they exist")
	c.Flags().StringVar(&in, "in", "", "examples file (.arrow or .parquet)")
	c.Flags().StringVar(&questions, "questions", "", "questions JSON to write")
	c.Flags().StringVar(&outputs, "outputs", "", "outputs JSON to write (golds); empty: skip (a test split: its rows have no gold)")
	c.MarkFlagRequired("in")
	c.MarkFlagRequired("questions")
	return c
}

func exportPredictionsCmd() *cobra.Command {
	var in, task, model, out string
	var force bool
	c := &cobra.Command{
		Use:   "export-predictions",
		Short: `Write a predictions file in LaMP's outputs format ({"task": "LaMP_N", "golds": [...]})`,
		Long: "Writes one model's predictions, one per id, in LaMP's outputs format. A table holding several models'\n" +
			"predictions (base and sft, say) needs --model NAME to pick one; an id seen twice is refused.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := datasets.ParseTask(task)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("model") && model == "" {
				return fmt.Errorf("--model: empty model name")
			}
			if err := prepareOutput(out, force); err != nil {
				return err
			}
			return datasets.ExportModelPredictions(in, t, model, out)
		},
	}
	c.Flags().BoolVar(&force, "force", false, "overwrite --out if it exists")
	c.Flags().StringVar(&in, "in", "", "predictions file (.arrow or .parquet)")
	c.Flags().StringVar(&task, "task", "", "task of the predictions")
	c.Flags().StringVar(&model, "model", "", "the model whose predictions to write, when the file holds several models' (its model column)")
	c.Flags().StringVar(&out, "out", "", "outputs JSON to write")
	for _, r := range []string{"in", "task", "out"} {
		c.MarkFlagRequired(r)
	}
	return c
}

func mergeCmd() *cobra.Command {
	var out, order string
	var force, partial bool
	c := &cobra.Command{
		Use:   "merge --out PATH (SHARD... | --order INPUT)",
		Short: "Concatenate per-shard outputs of one schema, or assemble a sharded stage's parts in the input's order",
		Long: `With files: concatenates them in argument order (one schema; ids seen twice are refused).
With --order INPUT and no files: assembles the part files every worker of a sharded stage wrote beside
PATH (PATH.parts/, e.g. from --shard auto in a Kubernetes Indexed Job) into PATH, in INPUT's row order:
the same bytes however the work was split. Every row of INPUT must have output (a worker that has not
finished is an error naming how many rows lack it). Tagged chains are assembled by ` + "`tagpr chains merge`" + `.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := prepareOutput(out, force); err != nil {
				return err
			}
			if order != "" {
				if len(args) > 0 {
					return fmt.Errorf("--order assembles %s.parts/; give no files", out)
				}
				n, err := datasets.AssembleFile(out, order)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "assembled %d rows from %s.parts into %s\n", n, out, out)
				return nil
			}
			if len(args) == 0 {
				return fmt.Errorf("give the files to merge, or --order INPUT to assemble %s.parts/", out)
			}
			n, err := datasets.Merge(out, args, datasets.MergeOptions{Partial: partial})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "merged %d files, %d rows, into %s\n", len(args), n, out)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "merged file (.arrow or .parquet)")
	c.Flags().BoolVar(&force, "force", false, "overwrite --out if it exists")
	c.Flags().StringVar(&order, "order", "", "assemble PATH.parts/ in this input file's row order")
	c.Flags().BoolVar(&partial, "partial", false, "merge shard files even when some shards of their split are not given (refused otherwise)")
	c.MarkFlagRequired("out")
	return c
}

func shardCmd() *cobra.Command {
	var in, out, shard string
	var batch int
	var force bool
	c := &cobra.Command{
		Use:   "shard --in PATH --shard i/N --out PATH",
		Short: "Copy one stable shard (by hash of the row id) of a file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sh, err := datasets.ParseShardFlag(shard)
			if err != nil {
				return err
			}
			if err := checkFlags("data shard", atLeast("--batch-rows", batch, 1)); err != nil {
				return err
			}
			if err := checkPinned(in); err != nil {
				return err
			}
			if err := prepareOutput(out, force); err != nil {
				return err
			}
			r, err := datasets.OpenReader(in, datasets.ReadOptions{BatchRows: batch, Shard: sh})
			if err != nil {
				return err
			}
			defer r.Close()
			// The output records which shard it is, for data merge to check.
			schema := datasets.WithShard(r.Schema(), sh)
			w, err := datasets.CreateBatchWriter(out, schema)
			if err != nil {
				return err
			}
			rows := int64(0)
			for r.Next() {
				rec := array.NewRecordBatch(schema, r.Batch().Columns(), r.Batch().NumRows())
				err := w.Write(rec)
				rec.Release()
				if err != nil {
					w.Abort()
					return err
				}
				rows += r.Batch().NumRows()
			}
			if err := r.Err(); err != nil {
				w.Abort()
				return err
			}
			if err := w.Commit(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "shard %s: %d rows to %s\n", sh, rows, out)
			return nil
		},
	}
	c.Flags().StringVar(&in, "in", "", "input file")
	c.Flags().StringVar(&out, "out", "", "output file (.arrow or .parquet)")
	c.Flags().StringVar(&shard, "shard", "", "shard i/N (0-based), or auto (see: tagpr chains generate --help)")
	c.Flags().IntVar(&batch, "batch-rows", datasets.DefaultBatchRows, "rows per record batch")
	c.Flags().BoolVar(&force, "force", false, "overwrite --out if it exists")
	for _, r := range []string{"in", "out", "shard"} {
		c.MarkFlagRequired(r)
	}
	return c
}

func infoCmd() *cobra.Command {
	var shard string
	var batch int
	c := &cobra.Command{
		Use:   "info PATH...",
		Short: "Print a file's schema kind, task, rows and batches (of a shard with --shard)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sh, err := datasets.ParseShardFlag(shard)
			if err != nil {
				return err
			}
			if err := checkFlags("data info", atLeast("--batch-rows", batch, 1)); err != nil {
				return err
			}
			for _, p := range args {
				if err := checkPinned(p); err != nil {
					return err
				}
				r, err := datasets.OpenReader(p, datasets.ReadOptions{BatchRows: batch, Shard: sh})
				if err != nil {
					return err
				}
				rows, batches := int64(0), 0
				for r.Next() {
					rows += r.Batch().NumRows()
					batches++
				}
				err = r.Err()
				task := ""
				if r.Task() != nil {
					task = " task " + r.Task().Name
				}
				r.Close()
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s v%d%s, shard %s: %d rows in %d batches of ≤%d\n", p, r.Kind(), datasets.SchemaVersion, task, sh, rows, batches, batch)
			}
			return nil
		},
	}
	c.Flags().StringVar(&shard, "shard", "", "count only shard i/N")
	c.Flags().IntVar(&batch, "batch-rows", datasets.DefaultBatchRows, "rows per record batch")
	return c
}

func synthCmd() *cobra.Command {
	cfg := datasets.DefaultSynthConfig()
	var out, tasks string
	var force bool
	c := &cobra.Command{
		Use:   "synth --out DIR",
		Short: "Write the built-in synthetic personalization benchmark (deterministic from --seed)",
		Long: `Writes, for each task (synth_tag: tag a movie as this user would; synth_rate: the score this user
gives a review; synth_gen: a post title in this user's style), DIR/TASK/{train,dev,test}.arrow with
a teacher's tagged chains (gold, but for the --title-closer-miss of titles it misses),
{split}_chains.arrow, and LaMP-format {split}_questions.json / {split}_outputs.json.
Users are split disjointly. Each user's latent preferences decide the answers and show only in the profile.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if tasks != "" {
				cfg.Tasks = strings.Split(tasks, ",")
			}
			err := checkFlags("data synth", atLeast("--users", cfg.Users, 1), atLeast("--queries", cfg.QueriesPerUser, 1),
				atLeast("--profile-min", cfg.ProfileMin, 1), atLeast("--profile-max", cfg.ProfileMax, max(cfg.ProfileMin, 1)),
				within("--dev", cfg.DevFrac, 0, 1), within("--test", cfg.TestFrac, 0, 1-cfg.DevFrac),
				within("--title-closer-miss", cfg.TitleCloserMiss, 0, 1))
			if err != nil {
				return err
			}
			entries, err := os.ReadDir(out)
			if err == nil && len(entries) > 0 && !force {
				return fmt.Errorf("data synth: %s is not empty; pass --force to write into it", out)
			}
			d, err := datasets.Synth(cfg)
			if err != nil {
				return err
			}
			// A missing or empty plain folder is made whole beside and renamed
			// in; into a symlink or the user's files (--force), as asked.
			if fi, lerr := os.Lstat(out); lerr != nil || fi.IsDir() && len(entries) == 0 {
				err = writeWhole(out, d.Write)
			} else {
				err = d.Write(out)
			}
			if err != nil {
				return err
			}
			for _, s := range d.Sets {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d examples\n", filepath.Join(out, s.Task.Name, s.Split+".arrow"), len(s.Examples))
			}
			return nil
		},
	}
	f := c.Flags()
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
	f.IntVar(&cfg.Users, "users", cfg.Users, "number of users")
	f.IntVar(&cfg.QueriesPerUser, "queries", cfg.QueriesPerUser, "questions per user and task")
	f.IntVar(&cfg.ProfileMin, "profile-min", cfg.ProfileMin, "fewest profile items per user and task")
	f.IntVar(&cfg.ProfileMax, "profile-max", cfg.ProfileMax, "most profile items per user and task")
	f.Float64Var(&cfg.DevFrac, "dev", cfg.DevFrac, "fraction of users in dev")
	f.Float64Var(&cfg.TestFrac, "test", cfg.TestFrac, "fraction of users in test")
	f.Float64Var(&cfg.TitleCloserMiss, "title-closer-miss", cfg.TitleCloserMiss,
		"share of title chains whose teacher misses the user's closing word (0: every chain answers the gold)")
	f.StringVar(&tasks, "tasks", "", "comma-separated subset of synth_tag,synth_rate,synth_gen (default all)")
	f.StringVar(&out, "out", "", "output directory")
	f.BoolVar(&force, "force", false, "write into --out even if it is not empty")
	c.MarkFlagRequired("out")
	return c
}

// writeWhole has write fill a side folder beside out (out.tmp) and
// renames it to out (missing, or an empty folder) once whole: a write that fails
// part way (a full disk) leaves no half-made out for a reader to take as
// whole, or for the rerun to refuse as not empty.
func writeWhole(out string, write func(dir string) error) error {
	tmp := filepath.Clean(out) + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	err := write(tmp)
	if err == nil {
		if err = os.Remove(out); err == nil || errors.Is(err, os.ErrNotExist) {
			err = os.Rename(tmp, out)
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
	}
	return err
}

package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/pipeline"
)

func init() {
	var o stageFlags
	var model, task, questions, out string
	c := &cobra.Command{
		Use:   "predict [-c FILE] | predict --model DIR --task N --questions FILE --out FILE",
		Short: "Greedy predictions in LaMP's outputs format: the config's predict stage, or one model folder on one questions file",
		Long: "Without --model: runs the config's predict stage (every listed model on every task and split, in\n" +
			"OUT/predictions/MODEL/TASK_SPLIT.{json,parquet}).\n\n" +
			"With --model: renders each question of --questions through the model folder's chat template\n" +
			"(tokenizer.json and tokenizer_config.json beside model.onnx), with the profile items retrieval picks and\n" +
			"the instruction the recipe trains on, generates greedily, extracts the text of the <answer> element\n" +
			"(\"\" when the format is broken) and writes {\"task\": \"LaMP_N\", \"golds\": [{\"id\", \"output\"}]} to --out\n" +
			"(and the completions to OUT.parquet). Retrieval, taxonomy, batch and max_new_tokens come from the config.\n\n" + runLong,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if model == "" {
				if task != "" || questions != "" || out != "" {
					return fmt.Errorf("--task, --questions and --out go with --model")
				}
				return runStages(cmd, o, pipeline.StagePredict)
			}
			if task == "" || questions == "" || out == "" {
				return fmt.Errorf("--model needs --task, --questions and --out")
			}
			t, err := datasets.ParseTask(task)
			if err != nil {
				return err
			}
			tx, err := pipeline.LoadTaxonomy(runCfg.Taxonomy)
			if err != nil {
				return err
			}
			if err := checkPinned(questions); err != nil {
				return err
			}
			if err := initRuntime(); err != nil {
				return err
			}
			p := runCfg.Stages.Predict
			n, err := pipeline.PredictFile(cmd.Context(), pipeline.PredictFileOptions{Model: model, Task: t, Questions: questions, Out: out,
				Taxonomy: tx, ChatTemplate: runCfg.Tokenizer.ChatTemplate, Session: sessionOptions(),
				Eval: pipeline.EvalOptions{Batch: p.Batch, MaxNewTokens: p.MaxNewTokens, Prompt: pipeline.PromptOptions{TopK: runCfg.Retrieval.TopK,
					Retrieval: runCfg.Retrieval.Method, MaxTokens: runCfg.Retrieval.MaxPromptTokens}}})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "predicted %d %s questions with %s: %s\n", n, t.Name, model, out)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&model, "model", "", "model folder (model.onnx, config.json, tokenizer.json)")
	f.StringVar(&task, "task", "", "LaMP task: 1, 2 (movie tagging), 2N, 3, 4, 5, 6, 7")
	f.StringVar(&questions, "questions", "", "LaMP questions file ({split}_questions.json)")
	f.StringVar(&out, "out", "", "predictions to write (.json, LaMP's outputs format)")
	addStageFlags(c, &o, "")
	rootCmd.AddCommand(c)
}

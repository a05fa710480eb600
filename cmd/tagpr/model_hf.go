package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/tokenize"
)

func modelImportHFCmd() *cobra.Command {
	var out, external string
	var force bool
	cmd := &cobra.Command{
		Use:   "import-hf DIR --out OUT",
		Short: "Turn a Hugging Face checkpoint (Llama, Mistral, Qwen2, Qwen3; or a BERT, RoBERTa, XLM-RoBERTa or MPNet text encoder; safetensors) into an ONNX model, without Python",
		Long: `Reads DIR/config.json and the weights (model.safetensors, or the shards listed in
model.safetensors.index.json; stored as F32, F16 or BF16) and writes OUT/model.onnx in the Optimum
layout, built by tagpr's own graph builder, with config.json, generation_config.json and the tokenizer
files (chat template included) copied beside it. The checkpoint is memory-mapped and converted one
weight at a time (float32, projections transposed to ONNX's [in, out]); from 1 GiB of weights on they
go to OUT/model.onnx.data. A model_type or config.json field tagpr cannot build the same way (scaled
rotary positions, per-layer sliding windows, quantization…) is refused by name.

A BERT, RoBERTa, XLM-RoBERTa or MPNet checkpoint (model_type bert: BERT, MiniLM, BGE, E5; roberta; xlm-roberta:
multilingual-e5, bge-m3, paraphrase-multilingual-*; mpnet: all-mpnet-base-v2; as transformers or sentence-transformers saves it) becomes a text encoder instead, as optimum-cli export onnx --task feature-extraction writes one
(output last_hidden_state), with its tokenizer and 1_Pooling/config.json: a PRMU encoder folder.`,
		Example: "  tagpr model import-hf ~/models/Qwen2.5-0.5B-Instruct --out models/qwen2.5-0.5b\n  tagpr model import-hf ~/models/all-mpnet-base-v2 --out models/mpnet",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("import-hf: --out OUT is required")
			}
			target := filepath.Join(out, "model.onnx")
			if _, err := os.Stat(target); err == nil && !force {
				return fmt.Errorf("import-hf: %s exists; pass --force to overwrite it", target)
			}
			if hf.IsEncoder(args[0]) {
				if cmd.Flags().Changed("external-data") && external != "never" {
					return fmt.Errorf("import-hf: --external-data %s: %s is a text encoder, whose weights (at most 2 GiB) go inside model.onnx", external, args[0])
				}
				res, err := hf.ImportEncoder(args[0], out)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s text encoder, %d layers, hidden %d, %d parameters; copied %v (use the folder as prmu --encoder or stages.prmu.encoder.dir)\n",
					res.Model, res.ModelType, res.Layers, res.Hidden, res.Params, res.Copied)
				if !slices.Contains(res.Copied, "tokenizer.json") {
					fmt.Fprintf(cmd.ErrOrStderr(), "note: %s has no tokenizer.json: a PRMU encoder needs the model's tokenizer.json (and tokenizer_config.json) in %s\n", args[0], out)
				}
				if !slices.Contains(res.Copied, "1_Pooling/config.json") {
					fmt.Fprintf(cmd.ErrOrStderr(), "note: %s has no 1_Pooling/config.json: set the pooling (--encoder-pooling mean|cls, stages.prmu.encoder.pooling) or copy the sentence-transformers model's 1_Pooling/ into %s\n", args[0], out)
				}
				return nil
			}
			var bar *progress
			res, err := hf.Import(args[0], out, hf.ImportOptions{ExternalData: external, Progress: func(done, total int64) {
				if bar == nil {
					// The clock starts at the first report, after the first
					// weight: the ETA is over the weights after it.
					bar = newProgress("import (MiB)", int(total>>20))
					bar.done, bar.base = int(done>>20), int(done>>20)
				}
				if n := int(done>>20) - bar.done; n > 0 || done == total { // not a redraw per small weight
					bar.Step(n)
				}
			}})
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			where := "inside model.onnx"
			if res.External {
				where = "in model.onnx.data"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s, %d layers, d_model %d, %d heads / %d kv, vocab %d, %d parameters (%.1f MB stored → %.1f MB float32 %s); copied %v\n",
				res.Model, res.ModelType, res.Config.Layers, res.Config.DModel, res.Config.Heads, res.Config.KVHeads, res.Config.Vocab,
				res.Params, float64(res.Stored)/1e6, float64(res.Written)/1e6, where, res.Copied)
			if !slices.Contains(res.Copied, "tokenizer.json") {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %s has no tokenizer.json: `tagpr model generate --chat/--prompt` and `tagpr serve` need one in %s "+
					"(copy the model's tokenizer.json and tokenizer_config.json there, or pass --tokenizer); training on token ids and `generate --ids` work without%s\n", args[0], out, tokenize.SentencepieceHint(args[0]))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "output folder")
	f.StringVar(&external, "external-data", "auto", "weights in model.onnx.data: auto (from 1 GiB), always or never")
	f.BoolVar(&force, "force", false, "overwrite an existing model")
	return cmd
}

func modelExportHFCmd() *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "export-hf RUN_OR_MODEL --out DIR",
		Short: "Write a model (or a `train lm` run's result) as a Hugging Face checkpoint that transformers loads",
		Long: `RUN_OR_MODEL is a model file or a folder holding model.onnx (a model, or the --out folder of
'tagpr train lm'). DIR gets model.safetensors with Hugging Face's parameter names and layouts (named from
the graph's structure, so Optimum exports with numbered initializers work too; a tied lm head is left to
tie_word_embeddings), config.json, generation_config.json and the tokenizer files with the chat template.
A LoRA run's PEFT adapter (RUN/adapter) is copied to DIR/adapter. 'tagpr train lm' does this itself
beside every model.onnx it writes. A DIR that already holds a checkpoint (*.safetensors, an index, adapter/)
is refused unless --force, which first removes what would be stale or shadow the new weights:
model*.safetensors shards, model.safetensors.index.json and adapter/. A weight that is NaN or Inf is refused
by name before anything is written.`,
		Example: "  tagpr model export-hf runs/sft --out hf/sft\n  python -c 'from transformers import AutoModelForCausalLM; AutoModelForCausalLM.from_pretrained(\"hf/sft\")'",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("export-hf: --out DIR is required")
			}
			path, err := lm.ResolveModelPath(args[0])
			if err != nil {
				if _, serr := os.Stat(filepath.Join(args[0], "checkpoint", "run.json")); serr == nil {
					return fmt.Errorf("export-hf: %s is a training run that has not finished (no model.onnx yet); rerun its `tagpr train lm` command to finish it", args[0])
				}
				return err
			}
			m, err := ir.Load(path)
			if err != nil {
				return err
			}
			from := modelFolder(path)
			res, err := hf.Export(m, out, hf.ExportOptions{From: from, Force: force})
			if err != nil {
				return err
			}
			if len(res.Removed) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "--force: removed the earlier checkpoint's %v from %s\n", res.Removed, out)
			}
			adapter := filepath.Join(from, "adapter")
			if _, err := os.Stat(filepath.Join(adapter, hf.AdapterConfig)); err == nil && filepath.Clean(adapter) != filepath.Clean(filepath.Join(out, "adapter")) {
				if err := copyFiles(adapter, filepath.Join(out, "adapter"), hf.AdapterConfig, hf.AdapterWeights); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: model.safetensors (%d tensors%s), config.json, copied %v\n", out, res.Tensors, tiedNote(res.Tied), res.Copied)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "output folder")
	cmd.Flags().BoolVar(&force, "force", false, "replace a checkpoint already in DIR (its model*.safetensors, index and adapter/ are removed first)")
	return cmd
}

// modelFolder is where a model file's config.json lives (one up for the
// transformers.js layout DIR/onnx/model.onnx).
func modelFolder(modelPath string) string {
	dir := filepath.Dir(modelPath)
	if filepath.Base(dir) == "onnx" && !trainFileExists(filepath.Join(dir, "config.json")) {
		return filepath.Dir(dir)
	}
	return dir
}

func copyFiles(src, dst string, names ...string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, n := range names {
		if err := trainCopyIfExists(filepath.Join(src, n), filepath.Join(dst, n)); err != nil {
			return err
		}
	}
	return nil
}

// tiedNote says which weights export left out as tied to another (Go's
// "tied map[]" was printed for a model with none).
func tiedNote(tied map[string]string) string {
	names := make([]string, 0, len(tied))
	for name := range tied {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "; %s left out, tied to %s", name, tied[name])
	}
	return b.String()
}

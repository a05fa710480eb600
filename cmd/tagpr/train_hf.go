package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/train"
)

// nameWeights gives the model's weights their Hugging Face names before
// training (so patterns, checkpoints and logs use them, and a tied head
// trains as one tensor with its embedding) and says when some have none.
func nameWeights(w io.Writer, m *onnxpb.ModelProto, modelPath string, hc *lm.HFConfig) error {
	names, err := lm.NameWeightsFor(m, hc)
	if err != nil {
		// NameWeights leaves the graph as it was: train it under its own names.
		fmt.Fprintf(w, "note: the weights of %s keep their ONNX names (%v)\n", modelPath, err)
		return nil
	}
	if len(names.Unnamed) > 0 {
		fmt.Fprintf(w, "note: %d weights of %s have no Hugging Face name (their nodes carry no module path): they keep their ONNX names and no Hugging Face checkpoint is written\n", len(names.Unnamed), modelPath)
	}
	for alias, to := range names.Tied {
		fmt.Fprintf(w, "%s is tied to %s: one weight\n", alias, to)
	}
	return nil
}

// describeSelection prints what each --trainable or --lora-targets
// pattern matched.
func describeSelection(w io.Writer, flag string, sel []train.PatternMatch) {
	for _, s := range sel {
		all := append(append([]string{}, s.Modules...), s.Params...)
		list := strings.Join(all, ", ")
		if len(all) > 8 {
			list = strings.Join(all[:8], ", ") + ", …"
		}
		fmt.Fprintf(w, "%s %s → %d: %s\n", flag, s.Pattern, len(all), list)
	}
}

// writeTrainedModel writes dir/model.onnx (the inference model m with the
// trained weights, adapters merged) with the base model's config and
// tokenizer files and, when its weights have Hugging Face names, the same
// model as a transformers checkpoint beside it (hf.WriteTrained).
func writeTrainedModel(w io.Writer, dir, modelDir string, m *onnxpb.ModelProto, weights map[string][]float32, adapters []train.Adapter) (string, error) {
	out := filepath.Join(dir, "model.onnx")
	if err := trainCopyIfExists(filepath.Join(modelDir, "config.json"), filepath.Join(dir, "config.json")); err != nil {
		return "", err
	}
	res, err := hf.WriteTrained(out, m, weights, adapters, modelDir)
	if err != nil {
		return "", err
	}
	if res.Checkpoint == nil {
		fmt.Fprintf(w, "no Hugging Face checkpoint written: %s\n", res.Skipped)
		return out, nil
	}
	msg := fmt.Sprintf("Hugging Face checkpoint: %s (%d tensors)", filepath.Join(dir, "model.safetensors"), res.Checkpoint.Tensors)
	if res.Adapter != "" {
		msg += "; PEFT adapter: " + res.Adapter
		if res.BaseLoads {
			msg += " (base_model_name_or_path " + res.AdapterBase + ")"
		}
	}
	fmt.Fprintln(w, msg)
	if res.Adapter != "" && !res.BaseLoads {
		fmt.Fprintf(w, "note: the adapter's base_model_name_or_path %s holds no transformers weights (it is an ONNX model folder); load the adapter on the original checkpoint CKPT: "+
			"PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(CKPT), %q) (import the base with `tagpr model import-hf CKPT` and the adapter names CKPT itself)\n", res.AdapterBase, res.Adapter)
	}
	return out, nil
}

// discardResult removes what an earlier run exported to out (model.onnx
// and its data, the Hugging Face checkpoint, the adapter) as --fresh
// starts over: a fresh run that fails or is stopped must not leave a
// model trained with other settings, beside its own checkpoints, to be
// taken for its result. Not when out is the model's own folder (training
// in place): there model.onnx is the base the export reloads.
func discardResult(out, modelDir string) error {
	a, err := os.Stat(out)
	if err != nil {
		return nil
	}
	if b, err := os.Stat(modelDir); err == nil && os.SameFile(a, b) {
		return nil
	}
	stale, err := hf.StaleCheckpointFiles(out)
	if err != nil {
		return err
	}
	for _, n := range append([]string{"model.onnx", "model.onnx.data"}, stale...) {
		if err := os.RemoveAll(filepath.Join(out, n)); err != nil {
			return err
		}
	}
	return nil
}

package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/lock"
)

// A finished stage made from a model records that model's files by
// content: an RL stage the model it started from (its summary's
// from_sha256), a predicted model's done.json the model it predicted
// with (model_sha256). A stage whose model was made again since (its
// folder deleted and the stage rerun, on another machine say) is then not
// skipped as if it still followed from it: its output belongs to another
// run, and the report would compare it with a model it was not made from.

// modelFileHashes are the sha256 of the files a load of dir/model.onnx
// reads (lm.Files: the model, its external data, its configs), by base
// name; hash hashes paths (lock.HashFile, or runEnv.fileHashes).
func modelFileHashes(dir string, hash func(paths ...string) map[string]string) map[string]string {
	out := map[string]string{}
	for p, h := range hash(lm.Files(filepath.Join(dir, "model.onnx"))...) {
		out[filepath.Base(p)] = h
	}
	return out
}

// hashFiles is fileHashes without a run's memo.
func hashFiles(paths ...string) map[string]string {
	out := map[string]string{}
	for _, p := range paths {
		if h, _, err := lock.HashFile(p); err == nil {
			out[p] = h
		}
	}
	return out
}

// sameFiles says whether two modelFileHashes agree; differ names the files
// that do not.
func sameFiles(was, now map[string]string) (differ []string) {
	for k, v := range was {
		if now[k] != v {
			differ = append(differ, k)
		}
	}
	for k := range now {
		if _, ok := was[k]; !ok {
			differ = append(differ, k)
		}
	}
	sort.Strings(differ)
	return differ
}

// rlFromDir is the model folder RL stage name starts from (RLPipeline.Run's
// rule: its from, else the stage before it, else SFT's model or the base).
func (r *runEnv) rlFromDir(name string) string {
	start := r.base
	if !r.cfg.Stages.SFT.Skip {
		start = r.dir("sft")
	}
	prev := start
	for _, st := range r.cfg.Stages.RL {
		from := prev
		switch st.From {
		case "":
		case RLFromStart:
			from = start
		default:
			from = r.dir("rl", st.From)
		}
		if st.Name == name {
			return from
		}
		prev = r.dir("rl", st.Name)
	}
	return start
}

// checkMadeFrom refuses a finished stage in dir whose recorded model files
// (was; nil: recorded by an older tagpr, not checked) differ from those in
// modelDir now.
func (r *runEnv) checkMadeFrom(stage, dir, modelDir string, was map[string]string) error {
	if was == nil {
		return nil
	}
	if differ := sameFiles(was, modelFileHashes(modelDir, r.fileHashes)); len(differ) > 0 {
		return fmt.Errorf("%s: %s was made from another model than %s holds now (%s changed since: that model was made again): delete %s (and the stages after it) to redo it from this one",
			stage, dir, modelDir, strings.Join(differ, ", "), dir)
	}
	return nil
}

// checkRLFrom checks a finished RL stage against the model it started from.
func (r *runEnv) checkRLFrom(name string) error {
	dir := r.dir("rl", name)
	s, err := readSummary(filepath.Join(dir, rlSummaryFile))
	if err != nil {
		return err
	}
	return r.checkMadeFrom("rl stage "+name, dir, r.rlFromDir(name), s.FromSHA256)
}

// checkPredictedWith checks a finished predictions folder against the model
// it predicted with.
func (r *runEnv) checkPredictedWith(m string) error {
	dir := r.predictDir(m)
	var done struct {
		Model       string            `json:"model"`
		Dir         string            `json:"dir"`
		Files       []string          `json:"files"`
		ModelSHA256 map[string]string `json:"model_sha256"`
	}
	if err := readJSON(filepath.Join(dir, "done.json"), &done); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	return r.checkMadeFrom("predict "+m, dir, r.modelDir(m), done.ModelSHA256)
}

package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lock"
	"github.com/tagpr/tagpr/rewardmodel"
)

// TaskData is one task's examples by split (train, dev, test; a split the
// source lacks is absent) and the files in the run folder holding them.
type TaskData struct {
	Task   *datasets.Task
	Splits map[string][]datasets.Example
	Files  map[string]string
}

// RunData is every task of a run, in the config's order.
type RunData struct {
	Tasks []TaskData
	Synth bool // the built-in synthetic benchmark
}

// dataSource is one task's input files by split, as the config names them.
type dataSource struct {
	task      *datasets.Task
	questions map[string]string // LaMP JSON, by split
	outputs   map[string]string // LaMP JSON golds, by split ("" when withheld)
	examples  map[string]string // lamp_example files, by split
}

// lampTaskDir finds a task's folder in LaMP's download layout: its own
// name first (LaMP_2M, LaMP_2N; LaMP_N for the others), then LaMP's shared
// outputs name (LaMP_2, which LaMP uses for movie tagging and, in older
// releases, news), so a folder holding both LaMP_2 and LaMP_2N gives task
// 2N the news files. The second result says whether the folder exists.
func lampTaskDir(root string, t *datasets.Task) (string, bool) {
	for _, name := range lampTaskNames(t) {
		if dir := filepath.Join(root, name); isDir(dir) {
			return dir, true
		}
	}
	return filepath.Join(root, t.Name), false
}

// lampTaskNames are the folder names a task is read from, preferred first.
func lampTaskNames(t *datasets.Task) []string {
	if t.OutputsName == t.Name {
		return []string{t.Name}
	}
	return []string{t.Name, t.OutputsName}
}

// isTaskFolder says whether dir is laid out as one task's folder (split
// subfolders, or the split files themselves) rather than the folder
// holding the tasks.
func isTaskFolder(dir string) bool {
	for _, split := range datasets.Splits {
		if exists(filepath.Join(dir, split, split+"_questions.json")) || exists(filepath.Join(dir, split+"_questions.json")) {
			return true
		}
	}
	return false
}

// lampLayoutError explains a task whose training questions are not where
// LaMP's layout puts them: data.lamp_dir set to one task's folder, the
// split files not in their split subfolders, or no folder for the task.
func lampLayoutError(root, dir string, found bool, t *datasets.Task, statErr error) error {
	want := "want LaMP's layout: LAMP_DIR/LaMP_N/{train,dev,test}/{split}_questions.json and {split}_outputs.json"
	names := lampTaskNames(t)
	switch {
	case isTaskFolder(root):
		return fmt.Errorf("data.lamp_dir: %s is one task's folder, not the folder holding the tasks: set data.lamp_dir to its parent, %s (%s)",
			root, filepath.Dir(root), want)
	case found && exists(filepath.Join(dir, "train_questions.json")):
		return fmt.Errorf("data.lamp_dir: task %s: the split files lie directly in %s: move them into train/ and dev/ subfolders "+
			"(train/train_questions.json, train/train_outputs.json, dev/dev_questions.json, dev/dev_outputs.json; optionally test/test_questions.json)",
			t.Name, dir)
	case !found:
		return fmt.Errorf("data.lamp_dir: task %s: %s holds no folder %s (%s)", t.Name, root, strings.Join(names, " or "), want)
	}
	return fmt.Errorf("data.lamp_dir: task %s: %w (the training split is required; %s)", t.Name, statErr, want)
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// dataSources lists every input file of the config and checks each exists
// and matches its models.lock pin, before any work starts.
func dataSources(d DataConfig) ([]dataSource, error) {
	var out []dataSource
	checkFile := func(key, path string) error {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if err := lock.VerifyIfPinned(path); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	}
	switch {
	case d.LaMPDir != "":
		if !isDir(d.LaMPDir) {
			return nil, fmt.Errorf("data.lamp_dir: %s is not a folder (want LaMP's layout: LaMP_N/{train,dev,test}/{split}_questions.json)", d.LaMPDir)
		}
		for _, ref := range d.Tasks {
			t, err := datasets.ParseTask(string(ref))
			if err != nil {
				return nil, fmt.Errorf("data.tasks: %w", err)
			}
			src := dataSource{task: t, questions: map[string]string{}, outputs: map[string]string{}}
			dir, found := lampTaskDir(d.LaMPDir, t)
			for _, split := range datasets.Splits {
				q := filepath.Join(dir, split, split+"_questions.json")
				if _, err := os.Stat(q); err != nil {
					if split == "train" {
						return nil, lampLayoutError(d.LaMPDir, dir, found, t, err)
					}
					continue
				}
				if err := checkFile("data.lamp_dir", q); err != nil {
					return nil, err
				}
				src.questions[split] = q
				o := filepath.Join(dir, split, split+"_outputs.json")
				if _, err := os.Stat(o); err == nil {
					if err := checkFile("data.lamp_dir", o); err != nil {
						return nil, err
					}
					src.outputs[split] = o
				} else if split != "test" {
					return nil, fmt.Errorf("data.lamp_dir: task %s: %s: %w (golds are withheld only for test)", t.Name, o, err)
				}
			}
			out = append(out, src)
		}
	case len(d.Imports) > 0:
		for i, im := range d.Imports {
			t, err := datasets.ParseTask(string(im.Task))
			if err != nil {
				return nil, fmt.Errorf("data.imports[%d].task: %w", i, err)
			}
			src := dataSource{task: t, examples: map[string]string{}}
			for split, p := range map[string]string{"train": im.Train, "dev": im.Dev, "test": im.Test} {
				if p == "" {
					continue
				}
				if err := checkFile(fmt.Sprintf("data.imports[%d].%s", i, split), p); err != nil {
					return nil, err
				}
				src.examples[split] = p
			}
			out = append(out, src)
		}
	}
	return out, nil
}

// missingSplit says why the run has no examples of task's split: the
// LaMP questions file or the import key that is missing.
func (r *runEnv) missingSplit(task *datasets.Task, split string) string {
	for _, src := range r.sources {
		if src.task.Name != task.Name {
			continue
		}
		if p := src.questions[split]; p != "" {
			return p + " holds no questions"
		}
		if p := src.examples[split]; p != "" {
			return p + " holds no examples"
		}
		if r.cfg.Data.LaMPDir != "" {
			dir, _ := lampTaskDir(r.cfg.Data.LaMPDir, task)
			return "no " + filepath.Join(dir, split, split+"_questions.json")
		}
		for i, im := range r.cfg.Data.Imports {
			if t, err := datasets.ParseTask(string(im.Task)); err == nil && t.Name == task.Name {
				return fmt.Sprintf("data.imports[%d].%s is not set", i, split)
			}
		}
	}
	return "the data has none"
}

// dataDone is data/done.json: what the data stage wrote.
type dataDone struct {
	Synth bool                      `json:"synth"`
	Tasks []string                  `json:"tasks"`
	Rows  map[string]map[string]int `json:"rows"` // task → split → examples
}

func dataFile(dir, task, split string) string { return filepath.Join(dir, task, split+".parquet") }

// loadData reads the examples the data stage wrote to dir.
func loadData(dir string) (*RunData, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "done.json"))
	if err != nil {
		return nil, err
	}
	var done dataDone
	if err := json.Unmarshal(raw, &done); err != nil {
		return nil, fmt.Errorf("data %s: %w", dir, err)
	}
	rd := &RunData{Synth: done.Synth}
	for _, name := range done.Tasks {
		t, err := datasets.ParseTask(name)
		if err != nil {
			return nil, fmt.Errorf("data %s: %w", dir, err)
		}
		td := TaskData{Task: t, Splits: map[string][]datasets.Example{}, Files: map[string]string{}}
		for _, split := range datasets.Splits {
			if _, ok := done.Rows[name][split]; !ok {
				continue
			}
			path := dataFile(dir, name, split)
			exs, _, err := datasets.ReadExamples(path, datasets.ReadOptions{})
			if err != nil {
				return nil, fmt.Errorf("data: %w (delete %s to rebuild it)", err, dir)
			}
			td.Splits[split], td.Files[split] = exs, path
		}
		rd.Tasks = append(rd.Tasks, td)
	}
	return rd, nil
}

// prepareData reloads data/, or builds it whole: in a side folder, stamped
// there and renamed into place when every file is written, so a failure
// (a file that does not parse, a killed run) leaves no stamped, half-made
// data folder to refuse the next config. An unfinished data/ (from an
// older tagpr) is replaced, not resumed.
func (r *runEnv) prepareData(ctx context.Context) error {
	dataDir := r.dir("data")
	if exists(filepath.Join(dataDir, "done.json")) {
		if err := r.checkStamp(dataDir, "data", r.dataSettings(), true); err != nil {
			return err
		}
	} else {
		note(r.h, "data", "reading the examples into %s", dataDir)
		tmp := dataDir + ".tmp"
		if err := os.RemoveAll(tmp); err != nil {
			return err
		}
		err := r.checkStamp(tmp, "data", r.dataSettings(), false)
		if err == nil {
			err = buildData(ctx, r.cfg.Data, r.sources, tmp)
		}
		if err == nil {
			if err = os.RemoveAll(dataDir); err == nil {
				err = os.Rename(tmp, dataDir)
			}
		}
		if err != nil {
			os.RemoveAll(tmp)
			return err
		}
	}
	var err error
	r.data, err = loadData(dataDir)
	return err
}

// buildData reads the configured source, keeps the first MaxExamples of
// each split, and writes each split as a lamp_example Parquet file in dir;
// done.json comes last. A LaMP import stops between questions when ctx is
// done (Ctrl-C), and so does buildData between files.
func buildData(ctx context.Context, d DataConfig, sources []dataSource, dir string) error {
	done := dataDone{Synth: d.Synth != nil, Rows: map[string]map[string]int{}}
	write := func(t *datasets.Task, split string, exs []datasets.Example) error {
		if d.MaxExamples > 0 && len(exs) > d.MaxExamples {
			exs = exs[:d.MaxExamples]
		}
		if err := datasets.WriteRows(dataFile(dir, t.Name, split), exs, func(p string) (*datasets.Writer[datasets.Example], error) {
			return datasets.CreateExamples(p, t)
		}); err != nil {
			return err
		}
		if done.Rows[t.Name] == nil {
			done.Tasks = append(done.Tasks, t.Name)
			done.Rows[t.Name] = map[string]int{}
		}
		done.Rows[t.Name][split] = len(exs)
		return nil
	}
	if d.Synth != nil {
		data, err := datasets.Synth(d.Synth.synthConfig())
		if err != nil {
			return fmt.Errorf("data.synth: %w", err)
		}
		for _, task := range data.Config.Tasks {
			for _, split := range datasets.Splits {
				set := data.Set(task, split)
				if err := write(set.Task, split, set.Examples); err != nil {
					return err
				}
			}
		}
	}
	for _, src := range sources {
		for _, split := range datasets.Splits {
			if err := ctx.Err(); err != nil {
				return err
			}
			var exs []datasets.Example
			switch {
			case src.questions[split] != "":
				tmp := dataFile(dir, src.task.Name, split) + ".import.parquet"
				if _, err := datasets.ImportLaMP(datasets.ImportOptions{Task: src.task, Questions: src.questions[split],
					Outputs: src.outputs[split], Split: split, Scheme: d.Scheme, Out: tmp, MaxExamples: d.MaxExamples, Context: ctx}); err != nil {
					return fmt.Errorf("data.lamp_dir: %w", err)
				}
				var err error
				exs, _, err = datasets.ReadExamples(tmp, datasets.ReadOptions{})
				os.Remove(tmp)
				if err != nil {
					return err
				}
			case src.examples[split] != "":
				var t *datasets.Task
				var err error
				exs, t, err = datasets.ReadExamples(src.examples[split], datasets.ReadOptions{})
				if err != nil {
					return fmt.Errorf("data.imports: %w", err)
				}
				if t.Name != src.task.Name {
					return fmt.Errorf("data.imports: %s holds task %s, the config says %s", src.examples[split], t.Name, src.task.Name)
				}
				// A dev file given as train (or import-lamp's old default,
				// dev, on a train file) trained on the wrong split.
				for _, e := range exs {
					if e.Split != split {
						return fmt.Errorf("data.imports: %s holds %s examples (%s), and the config gives it as %s: give it as %s, or import it again with tagpr data import-lamp --split %s",
							src.examples[split], e.Split, e.ID, split, e.Split, split)
					}
				}
			default:
				continue
			}
			// A gold eval would refuse (a LaMP-3 rating "seven", a tag not
			// among the labels) is refused now, not after every stage
			// trained on it.
			if kind := RewardKind(src.task); kind != rewardmodel.Generation {
				var pairs []Pair
				for _, e := range exs {
					if e.HasOutput {
						pairs = append(pairs, Pair{ID: e.ID, Gold: e.Output})
					}
				}
				if err := checkGolds(kind, src.task.Labels, pairs); err != nil {
					return fmt.Errorf("data: %s %s golds (%s%s): %w", src.task.Name, split, src.outputs[split], src.examples[split], err)
				}
			}
			if err := write(src.task, split, exs); err != nil {
				return err
			}
		}
	}
	if len(done.Tasks) == 0 {
		return errors.New("data: no examples")
	}
	for _, name := range done.Tasks {
		if done.Rows[name]["train"] == 0 {
			return fmt.Errorf("data: task %s has no training examples", name)
		}
	}
	b, err := json.MarshalIndent(done, "", "  ")
	if err != nil {
		return err
	}
	return renameio.WriteFile(filepath.Join(dir, "done.json"), append(b, '\n'), 0o644)
}

// fileFacts identify input files in a stage stamp: path and size.
func fileFacts(paths ...string) map[string]int64 {
	out := map[string]int64{}
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil {
			out[p] = st.Size()
		}
	}
	return out
}

// fileHashes are the input files' sha256 in a stage stamp (beside
// fileFacts' sizes): an input edited in place, at the same size (a gold
// corrected, a checkpoint of the same architecture exported over the old
// one), is a changed setting, not the input the stage was made from. Each
// file is hashed once per run (r.hashes).
func (r *runEnv) fileHashes(paths ...string) map[string]string {
	out := map[string]string{}
	for _, p := range paths {
		h, ok := r.hashes[p]
		if !ok {
			if sum, _, err := lock.HashFile(p); err == nil {
				h = sum
			}
			if r.hashes == nil {
				r.hashes = map[string]string{}
			}
			r.hashes[p] = h
		}
		if h != "" {
			out[p] = h
		}
	}
	return out
}

// hashKeys are the stamp keys fileHashes fills, which stamps recorded by
// an older tagpr lack: such a stamp is checked without them (its stage
// resumes as before).
var hashKeys = []string{"data.sha256", "tokenizer.sha256", "policy.sha256", "stages.prmu.encoder.sha256", "teacher.sha256"}

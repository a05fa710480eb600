package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lock"
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

// lampTaskDir finds a task's folder in LaMP's download layout: LaMP_N
// (LaMP_2 is movie tagging), else tagpr's task name (LaMP_2M, LaMP_2N).
func lampTaskDir(root string, t *datasets.Task) string {
	for _, name := range []string{t.OutputsName, t.Name} {
		if dir := filepath.Join(root, name); isDir(dir) {
			return dir
		}
	}
	return filepath.Join(root, t.OutputsName)
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
			dir := lampTaskDir(d.LaMPDir, t)
			for _, split := range datasets.Splits {
				q := filepath.Join(dir, split, split+"_questions.json")
				if _, err := os.Stat(q); err != nil {
					if split == "train" {
						return nil, fmt.Errorf("data.lamp_dir: task %s: %s: %w (the training split is required)", t.Name, q, err)
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

// buildData reads the configured source, keeps the first MaxExamples of
// each split, and writes each split as a lamp_example Parquet file in dir;
// done.json comes last.
func buildData(d DataConfig, sources []dataSource, dir string) error {
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
			var exs []datasets.Example
			switch {
			case src.questions[split] != "":
				tmp := dataFile(dir, src.task.Name, split) + ".import.parquet"
				if _, err := datasets.ImportLaMP(datasets.ImportOptions{Task: src.task, Questions: src.questions[split],
					Outputs: src.outputs[split], Split: split, Scheme: d.Scheme, Out: tmp}); err != nil {
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
			default:
				continue
			}
			if err := write(src.task, split, exs); err != nil {
				return err
			}
		}
	}
	if len(done.Tasks) == 0 {
		return errors.New("data: no examples")
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

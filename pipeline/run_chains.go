package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/internal/buildinfo"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/rewardmodel"
)

// chainsFile is where a task's tagged chains land (Parquet: pyarrow, DuckDB
// and Hugging Face datasets read it as is).
func (r *runEnv) chainsFile(task string) string { return r.dir("chains", task+".parquet") }

// chainsSummary is chains/summary.json, written when every task is done.
type chainsSummary struct {
	Teacher string                  `json:"teacher"`
	Seconds float64                 `json:"seconds"`
	Tasks   map[string]ChainsCounts `json:"tasks"`
	Tagpr   string                  `json:"tagpr,omitempty"` // the build that made them (buildinfo.String)
}

// ChainsCounts are one task's chain rows and how many were kept.
type ChainsCounts struct {
	Rows int `json:"rows"`
	Kept int `json:"kept"`
}

// chains asks the teacher for tagged chains on every task's training
// split; each task's file is resumable on its own (part files).
func (r *runEnv) chains(ctx context.Context) error {
	dir := r.dir("chains")
	sumPath := filepath.Join(dir, "summary.json")
	if err := r.checkStamp(dir, StageChains, r.chainsSettings(), exists(sumPath)); err != nil {
		return err
	}
	if exists(sumPath) {
		r.noteDone(StageChains, "the chains stage", dir, true)
		return nil
	}
	start := time.Now()
	c := r.cfg.Stages.Chains
	sum := chainsSummary{Tasks: map[string]ChainsCounts{}, Tagpr: buildinfo.String()}
	var teacher Teacher
	var labeller Labeller
	if r.cfg.Teacher.Kind != TeacherGold {
		t, closeFn, err := r.openTeacher()
		if err != nil {
			return err
		}
		defer closeFn()
		teacher = t
		if r.cfg.Teacher.Labeller == "teacher" {
			labeller = TeacherLabeller{Teacher: t, Taxonomy: r.tx}
		}
		sum.Teacher = t.Name()
	} else {
		sum.Teacher = TeacherGold
	}
	for _, td := range r.data.Tasks {
		out := r.chainsFile(td.Task.Name)
		if teacher == nil {
			note(r.h, StageChains, "%s: the %d gold chains of the training split", td.Task.Name, len(td.Splits["train"]))
			rows := goldChainRows(td.Task, td.Splits["train"], ChainsConfig{Taxonomy: r.tx, Prompt: r.prompt, Filter: c.Filter}, c.Plain)
			if err := datasets.WriteRows(out, rows, datasets.CreateChains); err != nil {
				return err
			}
		} else if !exists(out) { // GenerateChains ends by writing out: then the task is done
			n := len(td.Splits["train"])
			// A resumed task asks only for what its parts lack.
			if done, err := datasets.PartsFor(out, datasets.Shard{}).DoneIDs(); err == nil && len(done) > 0 {
				note(r.h, StageChains, "%s: %d of %d examples have their chains from before; asking %s for the other %d's (%d per example)",
					td.Task.Name, len(done), n, teacher.Name(), max(n-len(done), 0), c.Samples)
			} else {
				note(r.h, StageChains, "%s: asking %s for %d chains (%d per example)", td.Task.Name, teacher.Name(), n*c.Samples, c.Samples)
			}
			if _, err := GenerateChains(ctx, ChainsConfig{Examples: td.Files["train"], Out: out, Teacher: teacher, Labeller: labeller,
				Taxonomy: r.tx, Prompt: r.prompt, System: r.cfg.Teacher.System, Samples: c.Samples, Batch: c.Batch, Filter: c.Filter, Progress: r.h}); err != nil {
				return err
			}
		}
		if err := os.RemoveAll(out + ".parts"); err != nil {
			return err
		}
		rows, err := datasets.ReadChains(out, datasets.ReadOptions{})
		if err != nil {
			return err
		}
		n := ChainsCounts{Rows: len(rows)}
		for _, row := range rows {
			if row.Keep {
				n.Kept++
			}
		}
		note(r.h, StageChains, "%s: %d of %d chains kept", td.Task.Name, n.Kept, n.Rows)
		sum.Tasks[td.Task.Name] = n
	}
	sum.Seconds = time.Since(start).Seconds()
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(sumPath, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return r.dropImport("teacher", StageChains)
}

// dropImport removes out/NAME, the float32 copy of a checkpoint (a
// teacher's, the PRMU encoder's) once the stage that reads it has finished
// (a 7B teacher's is 28 GiB), unless stages.keep_checkpoints: nothing else
// reads it, and a rerun that redoes the stage imports it again.
func (r *runEnv) dropImport(name, stage string) error {
	dir := r.dir(name)
	if r.cfg.Stages.KeepCheckpoints || !exists(dir) {
		return nil
	}
	size := train.DirBytes(dir)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	note(r.h, stage, "removed %s, the %s's import (%s), now that the stage is done (stages.keep_checkpoints: true keeps it)", dir, name, train.FormatBytes(size))
	return nil
}

// goldChainRows records examples' own gold chains as chain rows, through
// the same checks as a teacher's (a chain without tags is refused, not
// relabelled).
func goldChainRows(task *datasets.Task, exs []datasets.Example, cfg ChainsConfig, plain bool) []datasets.Chain {
	cfg.Teacher = goldTeacher{}
	cfg.Filter = cfg.Filter.withDefaults()
	g := &chainGen{cfg: cfg, task: task, kind: RewardKind(task)}
	d := newDuplicates(cfg.Filter.KeepDuplicates)
	rows := make([]datasets.Chain, len(exs))
	for i := range exs {
		c := &candidate{ex: &exs[i], prompt: g.prompt(&exs[i]), text: exs[i].Chain, tagged: true}
		if !carriesTags(c.text, cfg.Taxonomy) {
			c.tagged, c.problem = false, "the example has no tagged gold chain"
		} else if plain {
			c.steps = len(rewardmodel.CheckTags(c.text, cfg.Taxonomy).Spans)
			c.text, c.plain = stripStepTags(c.text, cfg.Taxonomy), true
		}
		rows[i] = g.row(c)
		d.mark(&rows[i])
	}
	return rows
}

// stripStepTags removes the taxonomy's step tags from a chain, keeping
// their text, <think> and <answer>: the same reasoning, untagged.
func stripStepTags(chain string, tx rewardmodel.Taxonomy) string {
	pairs := make([]string, 0, 4*len(tx))
	for _, t := range tx {
		pairs = append(pairs, "<"+t.Name+">", "", "</"+t.Name+">", "")
	}
	return strings.NewReplacer(pairs...).Replace(chain)
}

// goldTeacher names the examples' own chains in provenance; it is never asked.
type goldTeacher struct{}

func (goldTeacher) Name() string { return TeacherGold }
func (goldTeacher) Complete(context.Context, [][]datasets.Message) ([]Completion, error) {
	return nil, fmt.Errorf("gold chains come from the examples, not from requests")
}

// openTeacher makes the configured openai or local teacher.
func (r *runEnv) openTeacher() (Teacher, func(), error) {
	t := r.cfg.Teacher
	switch t.Kind {
	case TeacherOpenAI:
		retries := t.MaxRetries
		if retries == 0 {
			retries = -1 // OpenAIConfig reads 0 as its default; the config's 0 means none
		}
		ot, err := NewOpenAITeacher(OpenAIConfig{BaseURL: t.BaseURL, Model: t.Model, APIKeyEnv: t.APIKeyEnv, Temperature: t.Temperature,
			MaxTokens: t.MaxTokens, Timeout: t.Timeout, MaxRetries: retries, Concurrency: t.Concurrency})
		if err != nil {
			return nil, nil, err
		}
		return ot, func() {}, nil
	case TeacherLocal:
		tok, err := r.loadTokenizer(filepath.Join(t.Dir, "tokenizer.json"))
		if err != nil {
			return nil, nil, fmt.Errorf("teacher.dir: %w", err)
		}
		dir, err := r.teacherModel()
		if err != nil {
			return nil, nil, err
		}
		lt, err := OpenLocalTeacher(dir, tok, r.sess, lm.Sampling{Temperature: t.Temperature, TopK: t.TopK, TopP: t.TopP}, t.MaxTokens,
			r.cfg.stageSeed(t.Seed, seedTeacher))
		if err != nil {
			return nil, nil, fmt.Errorf("teacher.dir: %w", err)
		}
		lt.Policy.Name = t.Dir // the checkpoint it was imported from, not out/teacher
		return lt, func() { lt.Close() }, nil
	}
	return nil, nil, fmt.Errorf("teacher.kind %q has no endpoint", t.Kind)
}

// teacherFiles are teacher.dir's modelFiles, found once a run.
func (r *runEnv) teacherFiles() ([]string, error) {
	if r.teacher != nil {
		return r.teacher, nil
	}
	files, err := modelFiles(r.cfg.Teacher.Dir)
	if err != nil {
		return nil, err
	}
	r.teacher = files
	return files, nil
}

// teacherModel is the folder the local teacher loads: teacher.dir, or
// out/teacher when teacher.dir is a transformers checkpoint (out/base when
// it is policy.dir's).
func (r *runEnv) teacherModel() (string, error) {
	src := r.cfg.Teacher.Dir
	if !isCheckpoint(src) {
		return src, nil
	}
	if filepath.Clean(src) == filepath.Clean(r.cfg.Policy.Dir) && exists(filepath.Join(r.base, "model.onnx")) {
		return r.base, nil // the policy's own checkpoint, imported once into out/base
	}
	files, err := r.teacherFiles()
	if err != nil {
		return "", fmt.Errorf("teacher.dir: %w", err)
	}
	return r.importedCopy("teacher.dir", src, r.dir("teacher"), files)
}

// importedCopy is dst, where the checkpoint src (the config's key; its
// files stamped) is imported the first time and again once it has changed:
// the import is only a copy of it, and the stages' own stamps name the
// checkpoint.
func (r *runEnv) importedCopy(key, src, dst string, files []string) (string, error) {
	model := filepath.Join(dst, "model.onnx")
	settings := map[string]any{key + ".sha256": r.fileHashes(files...)}
	if _, err := checkStampOf(dst, key, settings, exists(model)); err != nil {
		note(r.h, "model", "%s holds an import of another checkpoint than %s's (%v): importing it again", dst, src, err)
		if err := os.RemoveAll(dst); err != nil {
			return "", fmt.Errorf("%s: %w", key, err)
		}
		if _, err := checkStampOf(dst, key, settings, false); err != nil {
			return "", err
		}
	}
	if !exists(model) {
		if err := r.importCheckpoint(key, src, dst); err != nil {
			return "", err
		}
	}
	return dst, nil
}

package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/renameio/v2"
)

// TaskResult is one task's evaluation: the model's metrics and, when a base
// model was evaluated too, the base's metrics and the relative improvement.
type TaskResult struct {
	Task     string   `json:"task"`
	Split    string   `json:"split"`
	Examples int      `json:"examples"`
	Model    []Metric `json:"model"`
	Base     []Metric `json:"base,omitempty"`
	// Intermediate are models between base and final (e.g. SFT before RL),
	// in training order, shown as columns between base and model.
	Intermediate []ModelMetrics `json:"intermediate,omitempty"`
	// RelImprovement is RelativeImprovement(Model, Base); nil without a base.
	RelImprovement *float64 `json:"relative_improvement,omitempty"`
	Samples        []Sample `json:"samples,omitempty"`
}

// ModelMetrics are one named model's metrics on a task.
type ModelMetrics struct {
	Name    string   `json:"name"`
	Metrics []Metric `json:"metrics"`
}

// Sample is one shown example: what was asked, what came back, the gold.
type Sample struct {
	ID         string  `json:"id"`
	Input      string  `json:"input"`
	Completion string  `json:"completion"`
	Answer     string  `json:"answer"`
	Gold       string  `json:"gold"`
	Reward     float64 `json:"reward"`
}

// StageSummary is one training stage's headline numbers for the report.
type StageSummary struct {
	Name    string             `json:"name"`
	Steps   int                `json:"steps"`
	Seconds float64            `json:"seconds"`
	Final   map[string]float64 `json:"final"` // e.g. loss, reward means
}

// Report is what a run tells the people who read its results.
type Report struct {
	Title   string    `json:"title"`
	Created time.Time `json:"created"`
	Model   string    `json:"model"`
	// ModelName heads the final model's column (default "model").
	ModelName string         `json:"model_name,omitempty"`
	Dataset   string         `json:"dataset"`
	Stages    []StageSummary `json:"stages,omitempty"`
	Tasks     []TaskResult   `json:"tasks"`
	Notes     []string       `json:"notes,omitempty"`
	MeanRelI  *float64       `json:"mean_relative_improvement,omitempty"`
}

// Finalize computes per-task relative improvements and their mean.
func (r *Report) Finalize() error {
	sum, n := 0.0, 0
	for i := range r.Tasks {
		t := &r.Tasks[i]
		if len(t.Base) == 0 {
			continue
		}
		ri, err := RelativeImprovement(t.Model, t.Base)
		if errors.Is(err, ErrNoBaseline) {
			continue // shown as "—": a base scoring 0 everywhere gives no ratio
		}
		if err != nil {
			return fmt.Errorf("task %s: %w", t.Task, err)
		}
		t.RelImprovement = &ri
		sum += ri
		n++
	}
	if n > 0 {
		m := sum / float64(n)
		r.MeanRelI = &m
	}
	return nil
}

// Markdown renders the report for people.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", r.Title)
	fmt.Fprintf(&b, "- created: %s\n- model: `%s`\n- dataset: `%s`\n\n", r.Created.UTC().Format(time.RFC3339), r.Model, r.Dataset)
	if len(r.Stages) > 0 {
		b.WriteString("## Training\n\n| stage | steps | seconds | final |\n|---|---:|---:|---|\n")
		for _, s := range r.Stages {
			fmt.Fprintf(&b, "| %s | %d | %.1f | %s |\n", s.Name, s.Steps, s.Seconds, formatKV(s.Final))
		}
		b.WriteString("\n")
	}
	var mid []string // intermediate model names, from the first task that has them
	for _, t := range r.Tasks {
		if len(t.Intermediate) > 0 {
			for _, m := range t.Intermediate {
				mid = append(mid, m.Name)
			}
			break
		}
	}
	b.WriteString("## Evaluation\n\n| task | split | n | metric | base |")
	for _, n := range mid {
		b.WriteString(" " + n + " |")
	}
	final := r.ModelName
	if final == "" {
		final = "model"
	}
	b.WriteString(" " + final + " |\n|---|---|---:|---|---:|" + strings.Repeat("---:|", len(mid)) + "---:|\n")
	for _, t := range r.Tasks {
		cols := []map[string]float64{byName(t.Base)}
		for i := range mid {
			var ms []Metric
			if i < len(t.Intermediate) {
				ms = t.Intermediate[i].Metrics
			}
			cols = append(cols, byName(ms))
		}
		for _, m := range t.Model {
			arrow := "↑"
			if m.Lower {
				arrow = "↓"
			}
			if m.Diagnostic {
				arrow += " (diagnostic)"
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s %s |", t.Task, t.Split, t.Examples, m.Name, arrow)
			for _, c := range cols {
				if v, ok := c[m.Name]; ok {
					fmt.Fprintf(&b, " %.4f |", v)
				} else {
					b.WriteString(" — |")
				}
			}
			fmt.Fprintf(&b, " **%.4f** |\n", m.Value)
		}
	}
	b.WriteString("\n")
	if r.MeanRelI != nil {
		b.WriteString("Relative improvement over the base model, per task: the mean over the task's metrics of " +
			"(model − base)/|base|, sign flipped for error metrics (↓), so positive is better; diagnostic figures and metrics whose base is 0 " +
			"are left out; then averaged over tasks.\n\n")
		for _, t := range r.Tasks {
			if t.RelImprovement != nil {
				fmt.Fprintf(&b, "- %s: %+.1f%%\n", t.Task, 100**t.RelImprovement)
			}
		}
		fmt.Fprintf(&b, "- **mean: %+.1f%%**\n\n", 100**r.MeanRelI)
	}
	for _, t := range r.Tasks {
		if len(t.Samples) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## Samples: %s\n\n", t.Task)
		for _, s := range t.Samples {
			fmt.Fprintf(&b, "**%s** (reward %.2f) — gold `%s`, answer `%s`\n\n```\n%s\n```\n\n", s.ID, s.Reward, s.Gold, s.Answer, strings.TrimSpace(s.Completion))
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

func byName(ms []Metric) map[string]float64 {
	out := make(map[string]float64, len(ms))
	for _, m := range ms {
		out[m.Name] = m.Value
	}
	return out
}

func formatKV(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%.4g", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// Write stores report.md and report.json in dir, each atomically.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := renameio.WriteFile(filepath.Join(dir, "report.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report %s: %w", dir, err)
	}
	if err := renameio.WriteFile(filepath.Join(dir, "report.md"), []byte(r.Markdown()), 0o644); err != nil {
		return fmt.Errorf("write report %s: %w", dir, err)
	}
	return nil
}

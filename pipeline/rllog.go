package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/pipeline/grpo"
)

// RLStepLog is one line of a stage's step log (grpo.LogFile, in
// checkpoints/); RLTimes splits its time.
type (
	RLStepLog = grpo.StepLog
	RLTimes   = grpo.Times
)

// RLSummary is a finished stage's headline numbers, kept as summary.json in
// the stage's directory.
type RLSummary struct {
	Stage   string  `json:"stage"`
	Reward  string  `json:"reward"` // the preset, "" when the stage sets its own weights
	Scorer  string  `json:"scorer"` // how the reward was made
	Steps   int     `json:"steps"`
	Seconds float64 `json:"seconds"`           // summed step times (resumed runs included)
	Machine string  `json:"machine,omitempty"` // where it ran (ort.Machine; each with its steps when resumed on another)
	Tagpr   string  `json:"tagpr,omitempty"`   // the build that trained it (buildinfo.String)
	// ResumedAfter are the steps it was resumed after, Started and
	// Finished when its first process began and its last ended (RFC 3339).
	ResumedAfter []int  `json:"resumed_after,omitempty"`
	Started      string `json:"started,omitempty"`
	Finished     string `json:"finished,omitempty"`
	// FromSHA256 are the files of the model the stage started from, by
	// content (modelFileHashes): a finished stage whose start model was made
	// again since is not skipped as if it followed from it (checkRLFrom).
	FromSHA256 map[string]string `json:"from_sha256,omitempty"`
	// Start and End average the first and the last quarter of the steps:
	// "reward", each named reward, "kl", "clip_ratio/region_mean",
	// "frac_reward_zero_std", "completion_length".
	Start map[string]float64 `json:"start"`
	End   map[string]float64 `json:"end"`
	// Curve is the mean reward of each of (up to) 8 equal runs of steps.
	Curve []float64 `json:"reward_curve"`
	// Time sums each part of the step time over the stage.
	Time RLTimes `json:"time"`
}

func summarize(st RLStage, scorer string, logs []RLStepLog) RLSummary {
	s := RLSummary{Stage: st.Name, Reward: st.Reward, Scorer: scorer, Steps: len(logs)}
	for _, l := range logs {
		s.Seconds += l.Seconds.Total
		s.Time.Add(l.Seconds)
	}
	q := max(1, len(logs)/4)
	if len(logs) > 0 {
		s.Start, s.End = windowMeans(logs[:q]), windowMeans(logs[len(logs)-q:])
	}
	parts := min(8, len(logs))
	for i := 0; i < parts; i++ {
		w := logs[i*len(logs)/parts : (i+1)*len(logs)/parts]
		sum := 0.0
		for _, l := range w {
			sum += l.Reward.Mean
		}
		s.Curve = append(s.Curve, sum/float64(len(w)))
	}
	return s
}

func windowMeans(w []RLStepLog) map[string]float64 {
	m := map[string]float64{}
	n := float64(len(w))
	for _, l := range w {
		m["reward"] += l.Reward.Mean / n
		for k, v := range l.Rewards {
			m[k] += v.Mean / n
		}
		for k, c := range l.Contributions {
			m[shareKey+k] += c.Share / n
			m[signalKey+k] += c.Signal / n
		}
		if l.KL != nil {
			m["kl"] += *l.KL / n
		}
		m["clip_ratio/region_mean"] += l.ClipRegion / n
		m["frac_reward_zero_std"] += l.ZeroStdFraction / n
		m["completion_length"] += l.Length.Mean / n
	}
	return m
}

// Summary lines for a report's training table.
func (s RLSummary) final() map[string]float64 {
	out := map[string]float64{"reward_start": s.Start["reward"], "reward_end": s.End["reward"]}
	for k, v := range s.End {
		switch {
		case strings.HasPrefix(k, shareKey) || strings.HasPrefix(k, signalKey): // in the stage's note
		case k == "reward" || k == "clip_ratio/region_mean" || k == "frac_reward_zero_std":
		case k == "completion_length":
			out["len_end"] = v
		default:
			out[k+"_end"] = v
		}
	}
	return out
}

// Prefixes of a summary window's contribution figures.
const (
	shareKey  = "share/"
	signalKey = "signal/"
)

// contributionNote says how each weighted reward's share of the mean reward
// and of the learning signal moved from the first to the last quarter of
// the stage; "" when the log has none.
func (s RLSummary) contributionNote() string {
	var names []string
	for k := range s.End {
		if n, ok := strings.CutPrefix(k, shareKey); ok {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.2f/%.2f → %.2f/%.2f", n, s.Start[shareKey+n], s.Start[signalKey+n], s.End[shareKey+n], s.End[signalKey+n])
	}
	return "each weighted reward's share of the mean reward / of the learning signal (within-group variance), first → last quarter: " + strings.Join(parts, ", ")
}

// rolloutSegment names the Parquet file holding steps from..to of a stage
// (pyarrow, DuckDB and Hugging Face datasets read it as is).
func rolloutSegment(dir string, from, to int) string {
	return filepath.Join(dir, fmt.Sprintf("steps-%08d-%08d.parquet", from, to))
}

// rolloutSegments lists a stage's segment files in step order.
func rolloutSegments(dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "steps-*-*.parquet"))
	sort.Strings(files)
	return files
}

// dropRolloutsAfter removes rollout segments that reach past step (written
// just before a checkpoint that never landed).
func dropRolloutsAfter(dir string, step int) error {
	for _, f := range rolloutSegments(dir) {
		parts := strings.Split(strings.TrimSuffix(filepath.Base(f), ".parquet"), "-")
		if len(parts) != 3 {
			continue
		}
		to, err := strconv.Atoi(parts[2])
		if err != nil {
			continue
		}
		if to > step {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("rollouts: %w", err)
			}
		}
	}
	return nil
}

// ReadRolloutDir reads every rollout segment of a stage, in step order.
func ReadRolloutDir(dir string) ([]datasets.Rollout, error) {
	var out []datasets.Rollout
	for _, f := range rolloutSegments(dir) {
		rows, err := datasets.ReadRollouts(f, datasets.ReadOptions{})
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

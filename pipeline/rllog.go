package pipeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/datasets"
)

// RLLogFile is the per-step JSONL log of a stage, beside its checkpoints.
const RLLogFile = "rl_log.jsonl"

// Stat is a mean and (population) standard deviation.
type Stat struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

func statOf(x []float64) Stat {
	if len(x) == 0 {
		return Stat{}
	}
	m := meanOf(x)
	s := 0.0
	for _, v := range x {
		s += (v - m) * (v - m)
	}
	return Stat{Mean: m, Std: math.Sqrt(s / float64(len(x)))}
}

// LengthStat summarizes completion lengths in tokens.
type LengthStat struct {
	Mean float64 `json:"mean"`
	Min  int     `json:"min"`
	Max  int     `json:"max"`
}

// RLTimes splits a step's wall time, in seconds.
type RLTimes struct {
	Generate        float64 `json:"generate"`
	Score           float64 `json:"score"`     // decoding and rewards
	Reference       float64 `json:"reference"` // reference-model log-probs (beta > 0)
	ForwardBackward float64 `json:"forward_backward"`
	Optimizer       float64 `json:"optimizer"` // clipping and AdamW
	Total           float64 `json:"total"`
	// PRMU is the part of Score spent in PRMU (the step's answers in one call).
	PRMU float64 `json:"prmu,omitempty"`
}

// RLStepLog is one line of RLLogFile. Loss, KL, clip fraction and gradient
// norm are means over the step's applied updates (num_iterations of them,
// less any skipped for a non-finite loss or gradient).
type RLStepLog struct {
	Stage           string          `json:"stage"`
	Step            int             `json:"step"`
	Epoch           int             `json:"epoch"`
	Reward          Stat            `json:"reward"`
	Rewards         map[string]Stat `json:"rewards"` // each component
	ZeroStdFraction float64         `json:"frac_reward_zero_std"`
	Advantage       Stat            `json:"advantage"`
	KL              *float64        `json:"kl,omitempty"` // only with beta > 0
	ClipFraction    float64         `json:"clip_fraction"`
	Loss            float64         `json:"loss"`
	GradNorm        float64         `json:"grad_norm"`
	LR              float64         `json:"lr"`
	Skipped         int             `json:"skipped,omitempty"`
	Length          LengthStat      `json:"completion_length"`
	Truncated       float64         `json:"truncated_fraction"` // ended by max_completion_length
	Seconds         RLTimes         `json:"seconds"`
}

// readRLLog reads a stage log; a missing file is an empty log. A broken
// last line (a crash while writing it) is dropped; a broken line before it is
// an error.
func readRLLog(path string) ([]RLStepLog, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read rl log: %w", err)
	}
	defer f.Close()
	var out []RLStepLog
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var broken error
	for line := 1; sc.Scan(); line++ {
		if broken != nil {
			return nil, broken
		}
		var l RLStepLog
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			broken = fmt.Errorf("read rl log %s: line %d: %w", path, line, err)
			continue
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read rl log %s: %w", path, err)
	}
	return out, nil
}

// trimRLLog keeps the log lines of steps ≤ step (later ones belong to an
// interrupted run and are redone).
func trimRLLog(path string, step int) error {
	logs, err := readRLLog(path)
	if err != nil {
		return err
	}
	raw, _ := os.ReadFile(path)
	var keep []byte
	dropped := len(logs) != bytes.Count(raw, []byte("\n")) || (len(raw) > 0 && raw[len(raw)-1] != '\n')
	for _, l := range logs {
		if l.Step > step {
			dropped = true
			continue
		}
		js, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("rl log %s: %w", path, err)
		}
		keep = append(append(keep, js...), '\n')
	}
	if !dropped {
		return nil
	}
	return renameio.WriteFile(path, keep, 0o644)
}

// RLSummary is a finished stage's headline numbers, kept as summary.json in
// the stage's directory.
type RLSummary struct {
	Stage   string  `json:"stage"`
	Reward  string  `json:"reward"` // the mode
	Scorer  string  `json:"scorer"` // how the reward was made
	Steps   int     `json:"steps"`
	Seconds float64 `json:"seconds"` // summed step times (resumed runs included)
	// Start and End average the first and the last quarter of the steps:
	// "reward", each component, "kl", "clip_fraction", "frac_reward_zero_std",
	// "completion_length".
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
		s.Time.Generate += l.Seconds.Generate
		s.Time.Score += l.Seconds.Score
		s.Time.PRMU += l.Seconds.PRMU
		s.Time.Reference += l.Seconds.Reference
		s.Time.ForwardBackward += l.Seconds.ForwardBackward
		s.Time.Optimizer += l.Seconds.Optimizer
		s.Time.Total += l.Seconds.Total
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
		if l.KL != nil {
			m["kl"] += *l.KL / n
		}
		m["clip_fraction"] += l.ClipFraction / n
		m["frac_reward_zero_std"] += l.ZeroStdFraction / n
		m["completion_length"] += l.Length.Mean / n
	}
	return m
}

// Summary lines for a report's training table.
func (s RLSummary) final() map[string]float64 {
	out := map[string]float64{"reward_start": s.Start["reward"], "reward_end": s.End["reward"]}
	for k, v := range s.End {
		switch k {
		case "reward", "clip_fraction", "frac_reward_zero_std":
		case "completion_length":
			out["len_end"] = v
		default:
			out[k+"_end"] = v
		}
	}
	return out
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

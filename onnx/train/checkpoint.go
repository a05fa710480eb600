package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
)

// Param is one trainable weight owned by Go. Data is fed to ORT without a
// copy and updated in place by the optimizer.
type Param struct {
	Name  string
	Shape []int64
	Data  []float32
	// Decay says whether AdamW's weight decay applies (not to biases and norm gains).
	Decay bool
}

// RunState is what a resumed run needs besides weights and moments.
type RunState struct {
	Step   int               `json:"step"`   // loop steps done (each one optimizer update, or UpdatesPerStep)
	Epoch  int               `json:"epoch"`  // passes over the data done
	Cursor int64             `json:"cursor"` // next example within the epoch
	Stage  string            `json:"stage,omitempty"`
	RNG    []byte            `json:"rng,omitempty"` // marshalled generator state
	Extra  map[string]string `json:"extra,omitempty"`
}

// Checkpoint layout: DIR/step-NNNNNNNN/{weights,optimizer}.safetensors and
// state.json, and DIR/LATEST naming the newest complete one. LATEST is
// replaced atomically after the step directory is complete, so a crash at
// any moment leaves the previous checkpoint usable.
const (
	latestFile    = "LATEST"
	weightsFile   = "weights.safetensors"
	optimizerFile = "optimizer.safetensors"
	stateFile     = "state.json"
)

// SaveCheckpoint writes weights, optimizer moments and run state under dir and
// keeps the `keep` newest checkpoints (keep < 1 keeps 2).
func SaveCheckpoint(dir string, params []*Param, opt *AdamW, st RunState, keep int) error {
	name := fmt.Sprintf("step-%08d", st.Step)
	final := filepath.Join(dir, name)
	// Written whole into a partial folder, then renamed: a save that fails
	// (a non-finite weight, a full disk) leaves no step folder behind.
	sub := filepath.Join(dir, ".partial-"+name)
	if err := os.RemoveAll(sub); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", final, err)
	}
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", final, err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(sub)
		}
	}()
	w := make(map[string]STensor, len(params))
	for _, p := range params {
		w[p.Name] = STensor{Shape: p.Shape, F32: p.Data}
	}
	if err := WriteSafetensors(filepath.Join(sub, weightsFile), w, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if opt != nil {
		m := make(map[string]STensor, 2*len(params))
		for i, p := range params {
			m["m."+p.Name] = STensor{Shape: p.Shape, F32: opt.M[i]}
			m["v."+p.Name] = STensor{Shape: p.Shape, F32: opt.V[i]}
		}
		meta := map[string]string{
			"step": strconv.Itoa(opt.Step), "beta1": fmtFloat(opt.Beta1), "beta2": fmtFloat(opt.Beta2),
			"eps": fmtFloat(opt.Eps), "weight_decay": fmtFloat(opt.WeightDecay),
		}
		if err := WriteSafetensors(filepath.Join(sub, optimizerFile), m, meta); err != nil {
			return fmt.Errorf("save checkpoint: %w", err)
		}
	}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("save checkpoint %s: %w", sub, err)
	}
	if err := renameio.WriteFile(filepath.Join(sub, stateFile), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", sub, err)
	}
	// An earlier save of this step moves aside until the new one is in place.
	aside := filepath.Join(dir, ".old-"+name)
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", final, err)
	}
	if err := os.Rename(final, aside); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("save checkpoint %s: %w", final, err)
	}
	if err := os.Rename(sub, final); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", final, err)
	}
	done = true
	os.RemoveAll(aside)
	if err := renameio.WriteFile(filepath.Join(dir, latestFile), []byte(name+"\n"), 0o644); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	if keep < 1 {
		keep = 2
	}
	old, _ := filepath.Glob(filepath.Join(dir, "step-*"))
	sort.Strings(old)
	for i := 0; i < len(old)-keep; i++ {
		if filepath.Base(old[i]) != name {
			os.RemoveAll(old[i])
		}
	}
	return nil
}

func fmtFloat(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// ErrNoCheckpoint is returned by LoadCheckpoint when dir holds none.
var ErrNoCheckpoint = errors.New("no checkpoint")

// LatestCheckpoint returns the newest complete checkpoint directory under dir.
func LatestCheckpoint(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, latestFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w in %s", ErrNoCheckpoint, dir)
	}
	if err != nil {
		return "", fmt.Errorf("read checkpoint %s: %w", dir, err)
	}
	name := strings.TrimSpace(string(b))
	if !strings.HasPrefix(name, "step-") || strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("read checkpoint %s: %s names %q, not a step directory", dir, latestFile, name)
	}
	return filepath.Join(dir, name), nil
}

// LoadCheckpoint restores the newest checkpoint under dir into params' Data
// slices and opt's moments in place (tensors that wrap them stay valid) and
// returns its run state. Every param must be present with its shape.
func LoadCheckpoint(dir string, params []*Param, opt *AdamW) (RunState, error) {
	var st RunState
	sub, err := LatestCheckpoint(dir)
	if err != nil {
		return st, err
	}
	js, err := os.ReadFile(filepath.Join(sub, stateFile))
	if err != nil {
		return st, fmt.Errorf("load checkpoint %s: %w", sub, err)
	}
	if err := json.Unmarshal(js, &st); err != nil {
		return st, fmt.Errorf("load checkpoint %s: %s: %w", sub, stateFile, err)
	}
	// The state must be the one its folder was saved for: a damaged or
	// edited state.json would resume at another step (or report steps never
	// trained) without a word.
	if want := fmt.Sprintf("step-%08d", st.Step); st.Step < 0 || want != filepath.Base(sub) || st.Epoch < 0 || st.Cursor < 0 {
		return st, fmt.Errorf("load checkpoint %s: %s says step %d, epoch %d, cursor %d, which is not the state of %s (damaged?): remove %s and point %s at an earlier step folder, or start over (--fresh)",
			sub, stateFile, st.Step, st.Epoch, st.Cursor, filepath.Base(sub), filepath.Base(sub), latestFile)
	}
	wpath := filepath.Join(sub, weightsFile)
	w, _, err := ReadSafetensors(wpath)
	if err != nil {
		return st, fmt.Errorf("load checkpoint: %w", err)
	}
	for _, p := range params {
		if err := copyInto(wpath, p.Name, p, w[p.Name], p.Data); err != nil {
			return st, err
		}
	}
	if opt == nil {
		return st, nil
	}
	opath := filepath.Join(sub, optimizerFile)
	m, meta, err := ReadSafetensors(opath)
	if err != nil {
		return st, fmt.Errorf("load checkpoint: %w", err)
	}
	step, err := strconv.Atoi(meta["step"])
	if err != nil {
		return st, fmt.Errorf("load checkpoint %s: metadata step %q: %w", opath, meta["step"], err)
	}
	for i, p := range params {
		if err := copyInto(opath, "m."+p.Name, p, m["m."+p.Name], opt.M[i]); err != nil {
			return st, err
		}
		if err := copyInto(opath, "v."+p.Name, p, m["v."+p.Name], opt.V[i]); err != nil {
			return st, err
		}
	}
	opt.Step = step
	return st, nil
}

func copyInto(path, key string, p *Param, t STensor, dst []float32) error {
	if t.F32 == nil {
		return fmt.Errorf("load checkpoint %s: tensor %q missing or not float32", path, key)
	}
	if !slices.Equal(t.Shape, p.Shape) || len(t.F32) != len(dst) {
		return fmt.Errorf("load checkpoint %s: tensor %q has shape %v, want %v", path, key, t.Shape, p.Shape)
	}
	if i := NonFiniteValue(t.F32); i >= 0 {
		return fmt.Errorf("load checkpoint %s: tensor %q holds %v at index %d (damaged?): resume from an earlier step folder, or start over (--fresh)", path, key, t.F32[i], i)
	}
	copy(dst, t.F32)
	return nil
}

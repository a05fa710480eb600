package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/tagpr/tagpr/onnx/safetensors"
)

// Checkpoint is a transformers checkpoint's weights, mapped: one
// model.safetensors or the shards model.safetensors.index.json lists.
type Checkpoint struct {
	Dir   string
	files map[string]*safetensors.File // by file name
	where map[string]string            // tensor → file name
}

// IndexFile lists the shards of a sharded checkpoint.
const IndexFile = "model.safetensors.index.json"

// OpenCheckpoint maps dir's weights: model.safetensors when dir has one
// (transformers reads it before an index, so a stale index beside it is
// ignored as transformers ignores it), else the shards of the index.
func OpenCheckpoint(dir string) (*Checkpoint, error) {
	c := &Checkpoint{Dir: dir, files: map[string]*safetensors.File{}, where: map[string]string{}}
	var shards []string
	var weightMap map[string]string
	idx, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if _, serr := os.Stat(filepath.Join(dir, "model.safetensors")); serr == nil {
		idx, err = nil, fs.ErrNotExist
	}
	switch {
	case err == nil:
		var ix struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(idx, &ix); err != nil {
			return nil, fmt.Errorf("import: %s: %v", filepath.Join(dir, IndexFile), err)
		}
		if len(ix.WeightMap) == 0 {
			return nil, fmt.Errorf("import: %s: empty weight_map", filepath.Join(dir, IndexFile))
		}
		seen := map[string]bool{}
		for _, f := range ix.WeightMap {
			if f != filepath.Base(f) || f == "." || f == ".." {
				return nil, fmt.Errorf("import: %s: shard %q is not a file name in the folder", filepath.Join(dir, IndexFile), f)
			}
			if !seen[f] {
				seen[f] = true
				shards = append(shards, f)
			}
		}
		sort.Strings(shards)
		weightMap = ix.WeightMap
	case errors.Is(err, fs.ErrNotExist):
		if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err != nil {
			others, _ := filepath.Glob(filepath.Join(dir, "*.bin"))
			hint := ""
			if len(others) > 0 {
				hint = fmt.Sprintf(" (found %s: PyTorch pickles are not read; save with safe_serialization=True)", filepath.Base(others[0]))
			}
			return nil, fmt.Errorf("import: %s has neither model.safetensors nor %s%s", dir, IndexFile, hint)
		}
		shards = []string{"model.safetensors"}
	default:
		return nil, fmt.Errorf("import: %w", err)
	}
	for _, s := range shards {
		f, err := safetensors.Open(filepath.Join(dir, s))
		if err != nil {
			c.Close()
			if weightMap != nil && errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("import: %s lists shard %s, which the folder does not have (copy every shard, or fix the index): %w", filepath.Join(dir, IndexFile), s, err)
			}
			return nil, fmt.Errorf("import: %w", err)
		}
		c.files[s] = f
		for _, name := range f.Names() {
			if prev, dup := c.where[name]; dup {
				c.Close()
				return nil, fmt.Errorf("import: tensor %q is in both %s and %s", name, prev, s)
			}
			c.where[name] = s
		}
	}
	// The index must agree with the shards' own headers.
	for name, f := range weightMap {
		if c.where[name] != f {
			c.Close()
			return nil, fmt.Errorf("import: %s says tensor %q is in %s, but %s", filepath.Join(dir, IndexFile), name, f, c.locate(name))
		}
	}
	return c, nil
}

// Files are the paths of the weight files c maps (one model.safetensors,
// or the index and its shards), sorted.
func (c *Checkpoint) Files() []string {
	var out []string
	for name := range c.files {
		out = append(out, filepath.Join(c.Dir, name))
	}
	if len(out) > 1 || len(out) == 1 && filepath.Base(out[0]) != "model.safetensors" {
		out = append(out, filepath.Join(c.Dir, IndexFile))
	}
	sort.Strings(out)
	return out
}

// IsCheckpoint reports whether dir holds a transformers checkpoint that
// Import reads: config.json with model.safetensors or the index.
func IsCheckpoint(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return false
	}
	for _, f := range []string{"model.safetensors", IndexFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

func (c *Checkpoint) locate(name string) string {
	if f, ok := c.where[name]; ok {
		return "it is in " + f
	}
	return "no shard holds it"
}

// Close unmaps every shard.
func (c *Checkpoint) Close() {
	for _, f := range c.files {
		f.Close()
	}
}

// Names lists every tensor, sorted.
func (c *Checkpoint) Names() []string {
	out := make([]string, 0, len(c.where))
	for n := range c.where {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Lookup returns the file holding a tensor and its header entry.
func (c *Checkpoint) Lookup(name string) (*safetensors.File, safetensors.Entry, bool) {
	s, ok := c.where[name]
	if !ok {
		return nil, safetensors.Entry{}, false
	}
	f := c.files[s]
	e, _ := f.Entry(name)
	return f, e, true
}

// Elements is the number of values in all the tensors.
func (c *Checkpoint) Elements() int64 {
	var n int64
	for name := range c.where {
		_, e, _ := c.Lookup(name)
		n += e.Elements()
	}
	return n
}

// Bytes is the total size of the weights as stored.
func (c *Checkpoint) Bytes() int64 {
	var n int64
	for name := range c.where {
		_, e, _ := c.Lookup(name)
		n += e.Size()
	}
	return n
}

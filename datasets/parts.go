package datasets

import (
	"container/heap"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/array"
)

// Parts is the work in progress of a stage that fans out over the rows of an
// input file (chains from a teacher, predictions, PRMU scores): a folder
// beside the output, OUT.parts/, of part files, each one batch of output
// rows written atomically and named after the shard that wrote it
// (part-2of8-000003.arrow; part-all-000003.arrow without sharding). The
// workers of a Kubernetes Indexed Job write side by side on a shared volume;
// a killed worker leaves only whole parts, and rerun it redoes only the rows
// its shard has no part for. Assemble then writes every part's rows into OUT
// in the input's order, so the result does not depend on how the work was
// split.
type Parts struct {
	Dir   string
	Shard Shard // the shard this process writes (zero: all rows)
}

// PartsFor is the parts folder of an output file.
func PartsFor(out string, sh Shard) Parts { return Parts{Dir: out + ".parts", Shard: sh} }

// partName matches part files; part-NNNNNN.arrow (no writer) is how runs
// before sharding named theirs, read as written by "all".
var partName = regexp.MustCompile(`^part-(?:(all|[0-9]+of[0-9]+)-)?([0-9]{6,})\.arrow$`)

// writer names the shard in part file names.
func (p Parts) writer() string {
	if p.Shard.Count <= 1 {
		return "all"
	}
	return fmt.Sprintf("%dof%d", p.Shard.Index, p.Shard.Count)
}

// Groups lists every part file in the folder grouped by the shard that wrote
// it, each group in writing order; groups are sorted by writer name.
func (p Parts) Groups() ([][]string, error) {
	ents, err := os.ReadDir(p.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("parts %s: %w", p.Dir, err)
	}
	byWriter := map[string][]string{}
	for _, e := range ents {
		if m := partName.FindStringSubmatch(e.Name()); m != nil && !e.IsDir() {
			w := m[1]
			if w == "" {
				w = "all"
			}
			byWriter[w] = append(byWriter[w], filepath.Join(p.Dir, e.Name()))
		}
	}
	writers := make([]string, 0, len(byWriter))
	for w := range byWriter {
		writers = append(writers, w)
	}
	sort.Strings(writers)
	out := make([][]string, len(writers))
	for i, w := range writers {
		files := byWriter[w]
		sort.Strings(files) // zero-padded sequence numbers
		out[i] = files
	}
	return out, nil
}

// NextPath is where this shard's next part goes: after the highest sequence
// number it has written.
func (p Parts) NextPath() (string, error) {
	groups, err := p.Groups()
	if err != nil {
		return "", err
	}
	next := 0
	for _, g := range groups {
		for _, f := range g {
			m := partName.FindStringSubmatch(filepath.Base(f))
			if w := m[1]; w == p.writer() || w == "" && p.writer() == "all" {
				if n, err := strconv.Atoi(m[2]); err == nil && n >= next {
					next = n + 1
				}
			}
		}
	}
	return filepath.Join(p.Dir, fmt.Sprintf("part-%s-%06d.arrow", p.writer(), next)), nil
}

// WritePart writes rows as this shard's next part, atomically.
func WritePart[T any](p Parts, rows []T, create func(string) (*Writer[T], error)) error {
	path, err := p.NextPath()
	if err != nil {
		return err
	}
	return WriteRows(path, rows, create)
}

// DoneIDs are the ids (first column) with rows in any part of any shard.
func (p Parts) DoneIDs() (map[string]bool, error) {
	groups, err := p.Groups()
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	for _, g := range groups {
		for _, f := range g {
			r, err := OpenReader(f, ReadOptions{})
			if err != nil {
				return nil, fmt.Errorf("resume from %s: %w", p.Dir, damagedPart(f, err))
			}
			for r.Next() {
				ids := r.Batch().Column(0).(*array.String)
				for i := 0; i < ids.Len(); i++ {
					done[ids.Value(i)] = true
				}
			}
			err = r.Err()
			r.Close()
			if err != nil {
				return nil, fmt.Errorf("resume from %s: %w", p.Dir, damagedPart(f, err))
			}
		}
	}
	return done, nil
}

// damagedPart says how to go on from a part that does not read: parts
// appear whole (WriteRows), so one that does not read was damaged after;
// without it its worker redoes those rows.
func damagedPart(path string, err error) error {
	return fmt.Errorf("%w (a damaged part: delete %s and run its shard's worker again, which redoes only the rows no part holds)", err, path)
}

// InputOrder is the position of every row of an input file by its id (the
// first column), the order a fanned-out stage's output follows.
type InputOrder struct {
	path string
	pos  map[string]int
	ids  []string
}

// ReadInputOrder reads the ids of path in order; an id seen twice is an error
// (a stage's rows could not be put back in one order).
func ReadInputOrder(path string) (*InputOrder, error) {
	r, err := OpenReader(path, ReadOptions{})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	o := NewInputOrder(path)
	for r.Next() {
		ids := r.Batch().Column(0).(*array.String)
		for i := 0; i < ids.Len(); i++ {
			if err := o.Add(ids.Value(i)); err != nil {
				return nil, err
			}
		}
	}
	return o, r.Err()
}

// NewInputOrder is an empty order of the input named path; Add appends its
// ids (for inputs that are not tagpr files, e.g. LaMP questions JSON).
func NewInputOrder(path string) *InputOrder {
	return &InputOrder{path: path, pos: map[string]int{}}
}

// Add appends the next input row's id; an id seen before is an error.
func (o *InputOrder) Add(id string) error {
	if _, dup := o.pos[id]; dup {
		return fmt.Errorf("%s: id %q appears twice; a fanned-out stage needs unique ids", o.path, id)
	}
	o.pos[id] = len(o.ids)
	o.ids = append(o.ids, id)
	return nil
}

// Len is the number of input rows.
func (o *InputOrder) Len() int { return len(o.ids) }

// Assemble writes the rows of every part into out (which appears atomically,
// through create, batched as the typed writer batches), ordered by their
// ids' positions in the input; rows of one id keep the order their part
// holds them in. Each row passes through each (nil: unchanged) on its way,
// in that order — where a stage decides what depends on earlier rows (e.g.
// duplicates). Every input id must have rows (a worker that did not finish
// is named by how many ids lack rows), no id may come from two writers, and
// every part must hold its ids in input order. It returns the rows written.
func Assemble[T any](p Parts, out string, order *InputOrder, read func(string) ([]T, error), id func(*T) string,
	create func(string) (*Writer[T], error), each func(*T) error) (int64, error) {
	groups, err := p.Groups()
	if err != nil {
		return 0, err
	}
	h := &cursorHeap{}
	for gi, g := range groups {
		c := &partCursor[T]{group: gi, files: g, read: read, id: id, order: order}
		ok, err := c.advance()
		if err != nil {
			return 0, err
		}
		if ok {
			h.items = append(h.items, c)
		}
	}
	heap.Init(h)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return 0, err
	}
	w, err := create(out)
	if err != nil {
		return 0, err
	}
	fail := func(err error) (int64, error) { w.Abort(); return 0, err }
	from := map[string]int{} // id → the writer (group) its rows came from
	for h.Len() > 0 {
		c := h.items[0].(*partCursor[T])
		row := &c.rows[c.i]
		rid := id(row)
		if g, seen := from[rid]; seen && g != c.group {
			return fail(fmt.Errorf("assemble %s: id %q has rows from two writers (%s and %s): overlapping workers?", out, rid, groups[g][0], c.files[c.f]))
		}
		from[rid] = c.group
		if each != nil {
			if err := each(row); err != nil {
				return fail(fmt.Errorf("assemble %s: %w", out, err))
			}
		}
		if err := w.Write(row); err != nil {
			return fail(err)
		}
		ok, err := c.advance()
		if err != nil {
			return fail(err)
		}
		if ok {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	if len(from) != order.Len() {
		var missing []string
		for _, id := range order.ids {
			if _, ok := from[id]; !ok {
				missing = append(missing, strconv.Quote(id))
				if len(missing) == 3 {
					break
				}
			}
		}
		return fail(fmt.Errorf("assemble %s: %d of %d rows of %s have no output in %s (e.g. %s): a worker has not finished its shard; run it (again) and assemble after",
			out, order.Len()-len(from), order.Len(), order.path, p.Dir, strings.Join(missing, ", ")))
	}
	rows := w.Rows()
	if err := w.Commit(); err != nil {
		return 0, err
	}
	return rows, nil
}

// partCursor walks one writer's parts row by row.
type partCursor[T any] struct {
	group int
	files []string
	f     int // current file
	rows  []T
	i     int // current row
	pos   int // input position of the current row
	read  func(string) ([]T, error)
	id    func(*T) string
	order *InputOrder
}

// advance moves to the next row, loading the next part when one runs out.
func (c *partCursor[T]) advance() (bool, error) {
	prev := -1
	if c.rows != nil {
		prev = c.pos
		c.i++
	} else {
		c.f = -1
	}
	for c.rows == nil || c.i >= len(c.rows) {
		c.f++
		if c.f >= len(c.files) {
			return false, nil
		}
		rows, err := c.read(c.files[c.f])
		if err != nil {
			return false, damagedPart(c.files[c.f], err)
		}
		c.rows, c.i = rows, 0
	}
	rid := c.id(&c.rows[c.i])
	pos, ok := c.order.pos[rid]
	if !ok {
		return false, fmt.Errorf("%s: id %q is not in %s (a part of another input?)", c.files[c.f], rid, c.order.path)
	}
	if pos < prev {
		return false, fmt.Errorf("%s: id %q comes after a later input row: parts must follow the input's order", c.files[c.f], rid)
	}
	c.pos = pos
	return true, nil
}

func (c *partCursor[T]) position() int { return c.pos }

type positioned interface{ position() int }

// cursorHeap orders cursors by the input position of their current row.
type cursorHeap struct{ items []positioned }

func (h *cursorHeap) Len() int           { return len(h.items) }
func (h *cursorHeap) Less(i, j int) bool { return h.items[i].position() < h.items[j].position() }
func (h *cursorHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *cursorHeap) Push(x any)         { h.items = append(h.items, x.(positioned)) }
func (h *cursorHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

// ShardFromEnv variables: Kubernetes sets JOB_COMPLETION_INDEX in every pod of
// an Indexed Job; the manifest sets the count (the Job's completions).
const (
	EnvJobIndex   = "JOB_COMPLETION_INDEX"
	EnvShardIndex = "TAGPR_SHARD_INDEX" // outside Kubernetes, instead of JOB_COMPLETION_INDEX
	EnvShardCount = "TAGPR_SHARD_COUNT"
)

// ParseShardFlag reads a --shard value: "" (everything), "i/N", or "auto":
// the index from $JOB_COMPLETION_INDEX (or $TAGPR_SHARD_INDEX) and the count
// from $TAGPR_SHARD_COUNT.
func ParseShardFlag(s string) (Shard, error) {
	if s != "auto" {
		return ParseShard(s)
	}
	idx, src := os.Getenv(EnvJobIndex), EnvJobIndex
	if other := os.Getenv(EnvShardIndex); idx == "" {
		idx, src = other, EnvShardIndex
	} else if other != "" && other != idx {
		return Shard{}, fmt.Errorf("--shard auto: $%s=%q and $%s=%q disagree: set one of them", EnvJobIndex, idx, EnvShardIndex, other)
	}
	cnt := os.Getenv(EnvShardCount)
	if idx == "" || cnt == "" {
		return Shard{}, fmt.Errorf("--shard auto needs the shard index in $%s (set by a Kubernetes Indexed Job) or $%s, and the count in $%s (set it to the Job's completions); got index %q, count %q",
			EnvJobIndex, EnvShardIndex, EnvShardCount, idx, cnt)
	}
	sh, err := ParseShard(idx + "/" + cnt)
	if err != nil {
		return Shard{}, fmt.Errorf("--shard auto: $%s=%q, $%s=%q: %w", src, idx, EnvShardCount, cnt, err)
	}
	return sh, nil
}

// AssembleFile assembles the parts beside out (out.parts/) in the order of
// input, for stages whose rows need nothing decided at assembly: prediction
// and lamp_example parts. Tagged-chain parts are refused: their duplicates
// verdict is decided while assembling, by the chains stage's own merge.
func AssembleFile(out, input string) (int64, error) {
	return AssembleInOrder(out, func() (*InputOrder, error) { return ReadInputOrder(input) })
}

// AssembleInOrder is AssembleFile with the input's order read by order
// (called once the parts are found).
func AssembleInOrder(out string, order func() (*InputOrder, error)) (int64, error) {
	parts := PartsFor(out, Shard{})
	groups, err := parts.Groups()
	if err != nil {
		return 0, err
	}
	if len(groups) == 0 {
		return 0, fmt.Errorf("assemble %s: no part files in %s", out, parts.Dir)
	}
	r, err := OpenReader(groups[0][0], ReadOptions{})
	if err != nil {
		return 0, err
	}
	kind, task := r.Kind(), r.Task()
	r.Close()
	ord, err := order()
	if err != nil {
		return 0, err
	}
	switch kind {
	case KindPrediction:
		return Assemble(parts, out, ord, func(f string) ([]Prediction, error) { return ReadPredictions(f, ReadOptions{}) },
			func(p *Prediction) string { return p.ID }, CreatePredictions, nil)
	case KindExample:
		return Assemble(parts, out, ord, func(f string) ([]Example, error) { ex, _, err := ReadExamples(f, ReadOptions{}); return ex, err },
			func(e *Example) string { return e.ID }, func(p string) (*Writer[Example], error) { return CreateExamples(p, task) }, nil)
	case KindChain:
		return 0, fmt.Errorf("assemble %s: tagged_chain parts are assembled by the chains stage's merge (`tagpr chains merge`), which decides duplicates across shards", out)
	}
	return 0, fmt.Errorf("assemble %s: %s parts are not assembled by input order (only prediction and lamp_example)", out, kind)
}

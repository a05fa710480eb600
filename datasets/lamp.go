package datasets

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/renameio/v2"
)

// ImportOptions describe one LaMP import: a questions file (and, except for
// LaMP's test split, its outputs file) of one task and split, to one Arrow IPC or
// Parquet file.
type ImportOptions struct {
	Task      *Task
	Questions string // {split}_questions.json
	Outputs   string // {split}_outputs.json; "" when golds are withheld
	Split     string // train, dev or test
	Scheme    string // "user" or "time": which of LaMP's split schemes the files come from
	Out       string // .arrow or .parquet
	BatchRows int    // rows per record batch (default DefaultBatchRows)
	// MaxExamples > 0 imports the first MaxExamples questions only: the rest
	// of the file is not read, and golds of unread questions are not
	// matched to a question.
	MaxExamples int
	// Progress, when set, is called after each question with the bytes of
	// the questions file read so far and its size.
	Progress func(read, size int64)
	// Context, when set, stops the import between questions once it is
	// done (Ctrl-C): the error wraps its error, and nothing is left at Out.
	Context context.Context
}

// errEnoughQuestions stops a scan at ImportOptions.MaxExamples.
var errEnoughQuestions = errors.New("enough questions")

// ImportStats summarise an import.
type ImportStats struct {
	Examples int64
	Bytes    int64 // size of the questions file
}

// ImportLaMP streams a LaMP questions file into Arrow, joining golds by id. The
// questions file is decoded one question at a time, so memory is bounded by one
// question plus one record batch whatever the file size; golds (small) are held
// in a map. On any error nothing is left at opts.Out.
func ImportLaMP(opts ImportOptions) (ImportStats, error) {
	var st ImportStats
	if opts.Task == nil {
		return st, errors.New("import: no task")
	}
	if opts.Scheme == "" {
		opts.Scheme = "user"
	}
	if opts.Scheme != "user" && opts.Scheme != "time" && opts.Scheme != "synth" {
		return st, fmt.Errorf("import: scheme %q: want user or time (LaMP's split schemes) or synth", opts.Scheme)
	}
	if opts.Split == "" {
		return st, errors.New("import: no split name (train, dev or test)")
	}
	var golds map[string]Gold
	if opts.Outputs != "" {
		var err error
		if golds, err = ReadOutputs(opts.Outputs, opts.Task); err != nil {
			return st, err
		}
	}
	w, err := CreateExamples(opts.Out, opts.Task)
	if err != nil {
		return st, err
	}
	if opts.BatchRows > 0 {
		w.MaxRows = opts.BatchRows
	}
	joined := 0
	first := map[string]int{} // id → record index: two questions with one id would join one gold twice
	n, size, err := scanQuestions(opts.Questions, opts.Task, opts.Progress, func(e *Example) error {
		if opts.Context != nil {
			if err := opts.Context.Err(); err != nil {
				return err
			}
		}
		if opts.MaxExamples > 0 && len(first) == opts.MaxExamples {
			return errEnoughQuestions
		}
		if i, dup := first[e.ID]; dup {
			return fmt.Errorf("duplicate id: record %d has id %q too", i, e.ID)
		}
		// A copy: e.ID aliases the question's raw bytes (lampscan.go), so
		// keeping it as a key would keep every question, profile and all, in
		// memory until the import ends.
		first[strings.Clone(e.ID)] = len(first)
		e.Split, e.Scheme = opts.Split, opts.Scheme
		if golds != nil {
			g, ok := golds[e.ID]
			if !ok {
				return fmt.Errorf("no gold output in %s", opts.Outputs)
			}
			e.Output, e.HasOutput, e.Chain = g.Output, true, g.Chain
			joined++
		}
		return w.Write(e)
	})
	st.Examples, st.Bytes = n, size
	all := true
	if errors.Is(err, errEnoughQuestions) {
		err, all = nil, false
	}
	if err == nil && all && golds != nil && joined != len(golds) {
		err = fmt.Errorf("import: %s has %d golds whose id is not a question in %s (e.g. %q)",
			opts.Outputs, len(golds)-joined, opts.Questions, unmatched(golds, opts.Questions, opts.Task))
	}
	if err == nil && golds != nil {
		err = checkImportGolds(opts, golds)
	}
	if err != nil {
		w.Abort()
		return st, err
	}
	return st, w.Commit()
}

// checkImportGolds refuses a gold eval would refuse (a LaMP-3 rating
// "seven", a tag not among the labels), the first in file order.
func checkImportGolds(opts ImportOptions, golds map[string]Gold) error {
	ids := make([]string, 0, len(golds))
	for id := range golds {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return golds[ids[i]].Index < golds[ids[j]].Index })
	outs := make([]string, len(ids))
	for i, id := range ids {
		outs[i] = golds[id].Output
	}
	if err := CheckGolds(opts.Task.Kind, opts.Task.Labels, ids, outs); err != nil {
		return fmt.Errorf("import: golds %s (--task %s): %w", opts.Outputs, strings.TrimPrefix(opts.Task.Name, "LaMP_"), err)
	}
	return nil
}

// unmatched names one gold id with no question (rescans ids only; error path).
func unmatched(golds map[string]Gold, questions string, t *Task) string {
	seen := map[string]bool{}
	ScanQuestions(questions, t, func(e *Example) error { seen[strings.Clone(e.ID)] = true; return nil })
	ids := make([]string, 0)
	for id := range golds {
		if !seen[id] {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

// ScanQuestions decodes a questions file element by element (a token-level walk
// of the outer list), calling fn for each example (Split/Scheme/Output unset).
// An error from fn or from decoding names the file and the record (index, id).
// It returns the number of questions and the file size.
func ScanQuestions(path string, t *Task, fn func(*Example) error) (int64, int64, error) {
	return scanQuestions(path, t, nil, fn)
}

// scanQuestions is ScanQuestions, calling progress (when set) after each
// question with the bytes read so far and the file size.
func scanQuestions(path string, t *Task, progress func(read, size int64), fn func(*Example) error) (_, _ int64, err error) {
	var u *utf8Reader
	defer notUTF8(&err, &u, "read questions", path)
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read questions: %w", err)
	}
	defer f.Close()
	var size int64
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	br, u, err := utf8JSON(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return 0, size, fmt.Errorf("read questions %s: %w", path, err)
	}
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	if err := expectDelim(dec, '['); err != nil {
		return 0, size, fmt.Errorf("read questions %s: want a JSON list of questions: %w%s", path, err, swapped(err, "outputs"))
	}
	var (
		n    int64
		e    Example
		prev string
	)
	for dec.More() {
		var raw json.RawMessage // fresh each time: parsed strings alias it
		if err := dec.Decode(&raw); err != nil {
			return n, size, fmt.Errorf("read questions %s: record %d (after id %q, byte %d): %w", path, n, prev, dec.InputOffset(), jsonErr(err))
		}
		if err := parseQuestion(raw, t, &e); err != nil {
			return n, size, fmt.Errorf("read questions %s: record %d (id %q): %w", path, n, e.ID, err)
		}
		if err := fn(&e); err != nil {
			return n, size, fmt.Errorf("read questions %s: record %d (id %q): %w", path, n, e.ID, err)
		}
		prev = e.ID
		n++
		if progress != nil {
			progress(dec.InputOffset(), size)
		}
	}
	if err := expectDelim(dec, ']'); err != nil {
		return n, size, fmt.Errorf("read questions %s: after record %d (id %q): %w", path, n, prev, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return n, size, fmt.Errorf("read questions %s: data after the closing ]", path)
	}
	return n, size, nil
}

// utf8JSON skips a UTF-8 byte order mark (which Windows editors write and
// encoding/json calls an "invalid character 'ï'") and refuses UTF-16 and
// UTF-32 files by name: LaMP's files are UTF-8.
func utf8JSON(r *bufio.Reader) (*bufio.Reader, *utf8Reader, error) {
	head, _ := r.Peek(4)
	switch {
	case bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF}):
		r.Discard(3)
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE, 0, 0}), bytes.HasPrefix(head, []byte{0, 0, 0xFE, 0xFF}):
		return nil, nil, errors.New("the file is UTF-32 (it starts with a byte order mark); LaMP files are UTF-8: convert it, e.g. iconv -f UTF-32 -t UTF-8 FILE > FILE.utf8")
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}), bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		return nil, nil, errors.New("the file is UTF-16 (it starts with a byte order mark); LaMP files are UTF-8: convert it, e.g. iconv -f UTF-16 -t UTF-8 FILE > FILE.utf8")
	}
	u := &utf8Reader{r: r}
	return bufio.NewReaderSize(u, 1<<16), u, nil
}

// utf8Reader fails at the first byte that is not UTF-8: encoding/json would
// turn each into U+FFFD, so a Latin-1 file imported with every accented
// letter silently replaced (LaMP's Python tools refuse such a file).
type utf8Reader struct {
	r     io.Reader
	carry [utf8.UTFMax]byte // an incomplete sequence at the end of the last read
	nc    int
	off   int64 // file offset of carry[0]
	bad   *notUTF8Error
}

func (u *utf8Reader) Read(p []byte) (int, error) {
	if len(p) <= u.nc {
		return 0, io.ErrShortBuffer
	}
	copy(p, u.carry[:u.nc])
	n, err := u.r.Read(p[u.nc:])
	n += u.nc
	i := 0
	for i < n {
		if p[i] < utf8.RuneSelf {
			i++
			continue
		}
		if !utf8.FullRune(p[i:n]) && err == nil {
			break // the rest of the sequence comes with the next read
		}
		r, size := utf8.DecodeRune(p[i:n])
		if r == utf8.RuneError && size <= 1 {
			u.bad = &notUTF8Error{u.off + int64(i), p[i]}
			return 0, u.bad
		}
		i += size
	}
	u.nc = copy(u.carry[:], p[i:n])
	u.off += int64(i)
	if n-i > 0 && err == nil && i == 0 {
		return 0, nil
	}
	return i, err
}

// notUTF8Error is the first byte of a file that is not UTF-8.
type notUTF8Error struct {
	off int64
	b   byte
}

func (e *notUTF8Error) Error() string {
	return fmt.Sprintf("byte %d (0x%02X) is not UTF-8: LaMP files are UTF-8 and this one is not (Latin-1 or Windows-1252?); convert it, e.g. iconv -f WINDOWS-1252 -t UTF-8 FILE > FILE.utf8", e.off, e.b)
}

// notUTF8 replaces *err, when the file was not UTF-8, by that error alone
// (the JSON decoder reads ahead, so the record being parsed says nothing).
func notUTF8(err *error, u **utf8Reader, what, path string) {
	if *err != nil && *u != nil && (*u).bad != nil {
		*err = fmt.Errorf("%s %s: %w", what, path, (*u).bad)
	}
}

func jsonErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("unexpected end of file (truncated JSON?)")
	}
	return err
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonErr(err)
	}
	if tok != d {
		return &delimError{got: tok, want: d}
	}
	return nil
}

// delimError is a JSON value that starts with the wrong token.
type delimError struct {
	got  json.Token
	want json.Delim
}

func (e *delimError) Error() string { return fmt.Sprintf("got %v, want %q", e.got, string(e.want)) }

// swapped says when a questions file (a list) was given as an outputs file
// (an object), or the other way round: the likeliest cause of that error.
func swapped(err error, other string) string {
	var de *delimError
	if errors.As(err, &de) && (de.got == json.Delim('[') || de.got == json.Delim('{')) {
		return "; this file looks like a LaMP " + other + " file: are the questions and outputs files swapped?"
	}
	return ""
}

// rawText turns a raw JSON value into text. Strings are unquoted; numbers and
// booleans become their literal text with keep=true (the raw value must be kept
// in extra to restore the type); null is absent; objects and arrays are errors.
func rawText(raw json.RawMessage, name string) (s string, present, keep bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, false, nil
	}
	switch raw[0] {
	case '"':
		body := raw[1 : len(raw)-1]
		if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
			return string(body), true, false, nil
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, false, fmt.Errorf("%s: %w", name, err)
		}
		return s, true, false, nil
	case '{', '[':
		return "", false, false, fmt.Errorf("%s: want a string, got a JSON %s", name, map[byte]string{'{': "object", '[': "list"}[raw[0]])
	}
	return string(raw), true, true, nil
}

// Gold is one gold answer of an outputs file.
type Gold struct {
	Output, Chain string
	Index         int // the record's position in the file (over all its golds lists)
}

// ReadOutputs reads a LaMP outputs file ({"task": …, "golds": [{id, output}]});
// each gold may also carry tagpr's "chain" (the synthetic benchmark's gold chain).
// Ids are unique across the file, over every "golds" list it has.
func ReadOutputs(path string, t *Task) (map[string]Gold, error) {
	return readOutputs(path, t, "outputs", "gold")
}

// ReadPredictionOutputs reads a predictions file in LaMP's outputs format
// (what ExportPredictions writes, what LaMP's evaluator reads) as ReadOutputs
// does; its errors call the records predictions.
func ReadPredictionOutputs(path string, t *Task) (map[string]Gold, error) {
	return readOutputs(path, t, "predictions", "prediction")
}

// readOutputs reads an outputs-format file; file and record name what it
// holds in errors ("outputs"/"gold" or "predictions"/"prediction").
func readOutputs(path string, t *Task, file, record string) (_ map[string]Gold, err error) {
	var u *utf8Reader
	defer notUTF8(&err, &u, "read "+file, path)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	defer f.Close()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("read %s %s: %s", file, path, fmt.Sprintf(format, args...))
	}
	br, u, err := utf8JSON(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return nil, fail("%v", err)
	}
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, fail("want an object: %v%s", err, swapped(err, "questions"))
	}
	golds := map[string]Gold{}
	lists := 0
	type pos struct{ list, i int }
	index := map[string]pos{} // id → its record: ids are unique across every "golds" list of the file
	where := func(p pos) string {
		if lists > 1 {
			return fmt.Sprintf("%s %d of golds list %d", record, p.i, p.list)
		}
		return fmt.Sprintf("%s %d", record, p.i)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fail("%v", jsonErr(err))
		}
		switch tok {
		case "task":
			var name string
			if err := dec.Decode(&name); err != nil {
				return nil, fail("task: %v", jsonErr(err))
			}
			if name != t.OutputsName && name != t.Name {
				return nil, fail("task is %q, want %q%s", name, t.OutputsName, taskNameHint(name, t))
			}
		case "golds":
			lists++
			if err := expectDelim(dec, '['); err != nil {
				return nil, fail("golds: want a list: %v", err)
			}
			var prev string
			for i := 0; dec.More(); i++ {
				var g struct {
					ID     json.RawMessage `json:"id"`
					Output json.RawMessage `json:"output"`
					Chain  *string         `json:"chain"`
				}
				if err := dec.Decode(&g); err != nil {
					return nil, fail("%s %d (after id %q): %v", record, i, prev, jsonErr(err))
				}
				id, ok, _, err := rawText(g.ID, "id")
				if err != nil || !ok {
					return nil, fail("%s %d: id missing or not text (%v)", record, i, err)
				}
				out, ok, keep, err := rawText(g.Output, "output")
				if err != nil || !ok || keep {
					return nil, fail("%s %d (id %q): output missing or not a string", record, i, id)
				}
				if there, dup := index[id]; dup {
					return nil, fail("%s: duplicate id %q (%s has it too)", where(pos{lists, i}), id, where(there))
				}
				index[id] = pos{lists, i}
				gd := Gold{Output: out, Index: len(golds)}
				if g.Chain != nil {
					gd.Chain = *g.Chain
				}
				golds[id] = gd
				prev = id
			}
			if err := expectDelim(dec, ']'); err != nil {
				return nil, fail("golds: %v", err)
			}
		default:
			return nil, fail("unknown key %v (want task, golds)", tok)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, fail("%v", err)
	}
	if lists == 0 {
		return nil, fail("no golds list")
	}
	return golds, nil
}

// taskNameHint names the task an outputs file's "task" value belongs to,
// when it is another one tagpr knows (LaMP_2N's file read as LaMP_2M, say).
func taskNameHint(name string, t *Task) string {
	var flags []string
	for _, o := range tasks {
		if o != t && (o.Name == name || o.OutputsName == name) {
			flags = append(flags, "--task "+strings.TrimPrefix(o.Name, "LaMP_"))
		}
	}
	if len(flags) == 0 {
		return ""
	}
	return fmt.Sprintf(" (is this file %s's? use %s)", name, strings.Join(flags, " or "))
}

// jsonWriter writes JSON text without HTML escaping (chains contain <think>).
type jsonWriter struct {
	w   *bufio.Writer
	buf bytes.Buffer
	enc *json.Encoder
	err error
}

func newJSONWriter(w io.Writer) *jsonWriter {
	j := &jsonWriter{w: bufio.NewWriterSize(w, 1<<20)}
	j.enc = json.NewEncoder(&j.buf)
	j.enc.SetEscapeHTML(false)
	return j
}

func (j *jsonWriter) raw(s string) {
	if j.err == nil {
		_, j.err = j.w.WriteString(s)
	}
}

func (j *jsonWriter) str(s string) {
	j.buf.Reset()
	if err := j.enc.Encode(s); err != nil && j.err == nil {
		j.err = err
	}
	b := j.buf.Bytes()
	if j.err == nil {
		_, j.err = j.w.Write(b[:len(b)-1])
	}
}

// value writes a key's raw JSON from extra when present, else the string.
func (j *jsonWriter) value(extra map[string]json.RawMessage, key, s string) {
	if raw, ok := extra[key]; ok {
		j.raw(string(raw))
		return
	}
	j.str(s)
}

func parseExtra(s string) (map[string]json.RawMessage, error) {
	if s == "" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("extra is not a JSON object: %w", err)
	}
	return m, nil
}

// writeQuestion writes one example in LaMP's questions format.
func (j *jsonWriter) writeQuestion(t *Task, e *Example) error {
	extra, err := parseExtra(e.Extra)
	if err != nil {
		return err
	}
	j.raw(`{"id": `)
	j.value(extra, "id", e.ID)
	j.raw(`, "input": `)
	j.str(e.Input)
	j.raw(`, "profile": [`)
	for i := range e.Profile {
		p := &e.Profile[i]
		pe, err := parseExtra(p.Extra)
		if err != nil {
			return fmt.Errorf("profile[%d]: %w", i, err)
		}
		if i > 0 {
			j.raw(", ")
		}
		j.raw(`{"id": `)
		j.value(pe, "id", p.ID)
		for k, f := range t.ProfileFields {
			j.raw(", ")
			j.str(f)
			j.raw(": ")
			j.value(pe, f, p.Fields[k])
		}
		if p.HasDate || pe["date"] != nil {
			j.raw(`, "date": `)
			j.value(pe, "date", p.Date)
		}
		keys := make([]string, 0, len(pe))
		for k := range pe {
			if k != "id" && k != "date" && t.FieldIndex(k) < 0 {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			j.raw(", ")
			j.str(k)
			j.raw(": ")
			j.raw(string(pe[k]))
		}
		j.raw("}")
	}
	j.raw("]}")
	return j.err
}

// ExportStats count what ExportLaMP wrote: questions, and golds (the
// questions whose row has an output).
type ExportStats struct{ Questions, Golds int }

// ExportLaMP writes an examples file back in LaMP's format: the questions file
// and, when the examples carry golds, the outputs file ("" skips it, as for
// LaMP's test split, whose golds are withheld). An outputs file asked for when
// no row has a gold is refused, and nothing is written; rows without a gold
// are left out of the outputs file (ExportStats counts them).
func ExportLaMP(examples, questionsOut, outputsOut string) (ExportStats, error) {
	var st ExportStats
	r, err := OpenReader(examples, ReadOptions{})
	if err != nil {
		return st, err
	}
	defer r.Close()
	if r.Kind() != KindExample {
		return st, fmt.Errorf("export %s: holds %s rows, not lamp_example", examples, r.Kind())
	}
	t := r.Task()
	qf, err := createPending(questionsOut)
	if err != nil {
		return st, fmt.Errorf("export %s: %w", questionsOut, err)
	}
	defer qf.Cleanup()
	qw := newJSONWriter(qf)
	var of *renameio.PendingFile
	var ow *jsonWriter
	if outputsOut != "" {
		if of, err = createPending(outputsOut); err != nil {
			return st, fmt.Errorf("export %s: %w", outputsOut, err)
		}
		defer of.Cleanup()
		ow = newJSONWriter(of)
		ow.raw(`{"task": `)
		ow.str(t.OutputsName)
		ow.raw(`, "golds": [`)
	}
	qw.raw("[")
	n, golds := 0, 0
	for r.Next() {
		rows, err := DecodeExamples(r.Batch(), r.BatchFirst())
		if err != nil {
			return st, fmt.Errorf("export %s: %w", examples, err)
		}
		for i := range rows {
			e := &rows[i]
			if n > 0 {
				qw.raw(",\n")
			} else {
				qw.raw("\n")
			}
			if err := qw.writeQuestion(t, e); err != nil {
				return st, fmt.Errorf("export %s: record %d (id %q): %w", examples, n, e.ID, err)
			}
			n++
			if ow == nil || !e.HasOutput {
				continue
			}
			if golds > 0 {
				ow.raw(",\n")
			} else {
				ow.raw("\n")
			}
			extra, _ := parseExtra(e.Extra)
			ow.raw(`{"id": `)
			ow.value(extra, "id", e.ID)
			ow.raw(`, "output": `)
			ow.str(e.Output)
			if e.Chain != "" {
				ow.raw(`, "chain": `)
				ow.str(e.Chain)
			}
			ow.raw("}")
			golds++
		}
	}
	if err := r.Err(); err != nil {
		return st, err
	}
	st.Questions, st.Golds = n, golds
	if ow != nil && golds == 0 {
		return st, fmt.Errorf("export %s: none of the %d questions of %s has a gold (a test split?): drop --outputs, or export the split that has them", outputsOut, n, examples)
	}
	qw.raw("\n]\n")
	if ow != nil {
		// The outputs are written out before the questions file replaces
		// its path, and the questions file goes if the outputs cannot
		// take theirs: a failed write (a full disk) leaves no questions
		// file to be taken for a whole export, or refused over by a rerun.
		ow.raw("\n]}\n")
		if ow.err == nil {
			ow.err = ow.w.Flush()
		}
		if ow.err != nil {
			return st, fmt.Errorf("export %s: %w", outputsOut, ow.err)
		}
	}
	if err := finishJSON(qw, qf, questionsOut); err != nil {
		return st, err
	}
	if ow != nil {
		if err := finishJSON(ow, of, outputsOut); err != nil {
			os.Remove(questionsOut)
			return st, err
		}
	}
	return st, nil
}

func finishJSON(j *jsonWriter, pf *renameio.PendingFile, path string) error {
	if j.err == nil {
		j.err = j.w.Flush()
	}
	if j.err == nil {
		j.err = pf.CloseAtomicallyReplace()
	}
	if j.err != nil {
		return fmt.Errorf("export %s: %w", path, j.err)
	}
	return nil
}

// ExportPredictions writes a predictions file in LaMP's outputs format
// ({"task": "LaMP_N", "golds": [{"id", "output"}]}), the shape LaMP's evaluator reads.
// The table must hold one model's predictions (ExportModelPredictions picks
// one of several) and each id once.
func ExportPredictions(predictions string, t *Task, out string) error {
	return ExportModelPredictions(predictions, t, "", out)
}

// ExportModelPredictions is ExportPredictions of the rows of one model
// ("": the table must hold one model's predictions only; a table with
// several is refused, naming them). An id seen twice is refused, naming the
// id and the file; on any error nothing is left at out.
func ExportModelPredictions(predictions string, t *Task, model, out string) error {
	r, err := OpenReader(predictions, ReadOptions{})
	if err != nil {
		return err
	}
	defer r.Close()
	if r.Kind() != KindPrediction {
		return fmt.Errorf("export %s: holds %s rows, not prediction", predictions, r.Kind())
	}
	pf, err := createPending(out)
	if err != nil {
		return fmt.Errorf("export %s: %w", out, err)
	}
	defer pf.Cleanup()
	w := newJSONWriter(pf)
	w.raw(`{"task": `)
	w.str(t.OutputsName)
	w.raw(`, "golds": [`)
	n, written := 0, 0
	first := ""              // the model of the first row, when model is ""
	seen := map[string]int{} // id → its record
	for r.Next() {
		rows, err := DecodePredictions(r.Batch(), r.BatchFirst())
		if err != nil {
			return fmt.Errorf("export %s: %w", predictions, err)
		}
		for _, p := range rows {
			rec := n
			n++
			if p.Task != "" && p.Task != t.Name && p.Task != t.OutputsName {
				return fmt.Errorf("export %s: record %d (id %q) is task %s, not %s", predictions, rec, p.ID, p.Task, t.Name)
			}
			switch {
			case model != "":
				if p.Model != model {
					continue
				}
			case rec == 0:
				first = p.Model
			case p.Model != first:
				return fmt.Errorf("export %s: holds the predictions of several models (%s): pick one with --model NAME", predictions, modelList(predictions))
			}
			if j, dup := seen[p.ID]; dup {
				return fmt.Errorf("export %s: id %q appears twice (records %d and %d, model %q): LaMP's evaluator takes one prediction per id", predictions, p.ID, j, rec, p.Model)
			}
			seen[p.ID] = rec
			if written > 0 {
				w.raw(",")
			}
			w.raw("\n{\"id\": ")
			w.str(p.ID)
			w.raw(`, "output": `)
			w.str(p.Prediction)
			w.raw("}")
			written++
		}
	}
	if err := r.Err(); err != nil {
		return err
	}
	if model != "" && written == 0 {
		return fmt.Errorf("export %s: no predictions of model %q (the file holds %s)", predictions, model, modelList(predictions))
	}
	w.raw("\n]}\n")
	return finishJSON(w, pf, out)
}

// modelList names the models of a predictions file, sorted and quoted (error
// path: it reads the file again).
func modelList(predictions string) string {
	r, err := OpenReader(predictions, ReadOptions{})
	if err != nil {
		return "unreadable: " + err.Error()
	}
	defer r.Close()
	set := map[string]bool{}
	for r.Next() {
		rows, err := DecodePredictions(r.Batch(), r.BatchFirst())
		if err != nil {
			return "unreadable: " + err.Error()
		}
		for _, p := range rows {
			set[p.Model] = true
		}
	}
	if len(set) == 0 {
		return "no rows"
	}
	names := make([]string, 0, len(set))
	for m := range set {
		names = append(names, strconv.Quote(m))
	}
	sort.Strings(names)
	return "models " + strings.Join(names, ", ")
}

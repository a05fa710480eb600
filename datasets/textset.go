package datasets

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// TextSet is a language-modelling training set: plain texts, texts with
// prompts (prompt/completion rows: only the completion is trained on),
// chats (the last message is the assistant's answer, trained on), or
// pre-tokenized ids. One of Texts, Chats and IDs is set.
type TextSet struct {
	Texts, Prompts []string
	Chats          [][]Message
	IDs            [][]int64
	// Dropped counts rows left out: tagged chains the filter did not keep.
	Dropped int
}

// ReadTextSet reads a training set: a tagged_chain file (the kept chains,
// each as its prompt messages followed by the chain as the assistant's
// turn), else a text column (with a "prompt" column beside it when there is
// one; the text column then defaults to "completion" if "text" is absent)
// or, when the file has one, an "input_ids" list column. Files are JSON
// lines, Arrow IPC (file or stream) or Parquet. A null text, prompt or
// input_ids is refused, naming the line or record (as transformers fails on
// None), not trained on as an empty row. column "" is "text".
func ReadTextSet(path, column string) (TextSet, error) {
	if column == "" {
		column = "text"
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".json", ".ndjson":
		return readTextJSONL(path, column)
	case ".arrow", ".ipc", ".feather", ".parquet", ".pq":
		if err := checkWholeHFDataset(path); err != nil {
			return TextSet{}, err
		}
		r, err := OpenReader(path, ReadOptions{})
		if err == nil {
			kind := r.Kind()
			r.Close()
			if kind == KindChain {
				return readChainTexts(path)
			}
		}
		return readTextColumn(path, column, err)
	}
	return TextSet{}, fmt.Errorf("read %s: unknown extension (want .arrow, .ipc, .feather, .parquet or .jsonl)", path)
}

// checkWholeHFDataset refuses one shard of a Hugging Face save_to_disk
// folder (its state.json lists the data files) that has several: training
// on it would leave the other shards' rows out without a word.
func checkWholeHFDataset(path string) error {
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(path), "state.json"))
	if err != nil {
		return nil
	}
	var state struct {
		DataFiles []struct {
			Filename string `json:"filename"`
		} `json:"_data_files"`
	}
	if json.Unmarshal(raw, &state) != nil || len(state.DataFiles) < 2 {
		return nil
	}
	for i, f := range state.DataFiles {
		if f.Filename == filepath.Base(path) {
			return fmt.Errorf("read %s: shard %d of the %d of a Hugging Face save_to_disk folder (its state.json lists them), and tagpr reads one file: write the dataset as one (datasets.load_from_disk(DIR).to_parquet(FILE)), or copy this shard under another name to train on it alone", path, i+1, len(state.DataFiles))
		}
	}
	return nil
}

// readChainTexts makes chats of the kept rows of a tagged_chain file.
func readChainTexts(path string) (TextSet, error) {
	var d TextSet
	rows, err := ReadChains(path, ReadOptions{})
	if err != nil {
		return d, err
	}
	for i, r := range rows {
		if !r.Keep {
			d.Dropped++
			continue
		}
		if len(r.Prompt) == 0 {
			return d, fmt.Errorf("read %s: record %d (id %q): the chain has no prompt messages", path, i, r.ID)
		}
		chat := append(append([]Message(nil), r.Prompt...), Message{Role: "assistant", Content: r.Chain})
		d.Chats = append(d.Chats, chat)
	}
	if len(d.Chats) == 0 {
		return d, fmt.Errorf("read %s: none of its %d chains was kept (keep=false on every row)", path, len(rows))
	}
	return d, nil
}

func readTextJSONL(path, column string) (TextSet, error) {
	var d TextSet
	f, err := os.Open(path)
	if err != nil {
		return d, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	str := func(line int, obj map[string]json.RawMessage, key string) (string, error) {
		if isNull(obj[key]) {
			return "", fmt.Errorf("read %s: line %d: %q is null: give the row a string or remove it", path, line, key)
		}
		var s string
		if e := json.Unmarshal(obj[key], &s); e != nil {
			return "", fmt.Errorf("read %s: line %d: %q is not a string: %v", path, line, key, e)
		}
		return s, nil
	}
	withPrompt := -1 // unknown until the first row
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			var obj map[string]json.RawMessage
			if e := json.Unmarshal(b, &obj); e != nil {
				return d, fmt.Errorf("read %s: line %d: not a JSON object: %v", path, line, e)
			}
			col := column
			if _, ok := obj[col]; !ok && col == "text" {
				if _, ok := obj["completion"]; ok {
					col = "completion"
				}
			}
			_, hasPrompt := obj["prompt"]
			if raw, ok := obj["input_ids"]; ok {
				var row []int64
				if isNull(raw) {
					return d, fmt.Errorf("read %s: line %d: input_ids is null: give the row a list of ids or remove it", path, line)
				}
				if e := json.Unmarshal(raw, &row); e != nil {
					return d, fmt.Errorf("read %s: line %d: input_ids: %v", path, line, e)
				}
				d.IDs = append(d.IDs, row)
			} else if _, ok := obj[col]; ok {
				s, e := str(line, obj, col)
				if e != nil {
					return d, e
				}
				d.Texts = append(d.Texts, s)
				if withPrompt < 0 {
					withPrompt = map[bool]int{false: 0, true: 1}[hasPrompt]
				}
				if hasPrompt != (withPrompt == 1) {
					return d, fmt.Errorf("read %s: line %d: some rows have a \"prompt\" and some do not", path, line)
				}
				if hasPrompt {
					p, e := str(line, obj, "prompt")
					if e != nil {
						return d, e
					}
					d.Prompts = append(d.Prompts, p)
				}
			} else {
				return d, fmt.Errorf("read %s: line %d: no %q (or input_ids) field", path, line, column)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return d, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if d.Texts != nil && d.IDs != nil {
		return d, fmt.Errorf("read %s: mixes %q and input_ids lines", path, column)
	}
	if d.Texts == nil && d.IDs == nil {
		return d, fmt.Errorf("read %s: no rows", path)
	}
	return d, nil
}

// isNull reports whether a JSON value is the literal null (which
// encoding/json would read as "" or an empty list without a word).
func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// readTextColumn reads a text column; tagprErr is why OpenReader refused
// the file (nil: it did not), returned for a file marked tagged_chain.
func readTextColumn(path, column string, tagprErr error) (TextSet, error) {
	var d TextSet
	f, err := os.Open(path)
	if err != nil {
		return d, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	src, schema, err := openSource(f, 4096)
	if err != nil {
		return d, fmt.Errorf("read %s: %w", path, err)
	}
	defer src.close()
	if kind, _ := metaValue(schema.Metadata(), MetaKind); Kind(kind) == KindChain && tagprErr != nil {
		return d, tagprErr // a tagged_chain file tagpr cannot read: not a text column's business
	}
	var recs []arrow.RecordBatch
	for {
		rec, err := src.next()
		if err != nil {
			return d, fmt.Errorf("read %s: record batch %d: %w", path, len(recs), err)
		}
		if rec == nil {
			break
		}
		recs = append(recs, rec)
	}
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	name := column
	if idx := schema.FieldIndices("input_ids"); len(idx) > 0 {
		name = "input_ids"
	} else if len(schema.FieldIndices(name)) == 0 && name == "text" && len(schema.FieldIndices("completion")) > 0 {
		name = "completion"
	}
	idx := schema.FieldIndices(name)
	if len(idx) == 0 {
		names := make([]string, schema.NumFields())
		for i, f := range schema.Fields() {
			names[i] = fmt.Sprintf("%s (%s)", f.Name, f.Type)
		}
		hint := "name the text column with --text-column"
		if fieldNames(schema) == fieldNames(ChainSchema) {
			hint = "they are a tagged_chain table's, without tagpr's schema metadata (pandas, Polars and Hugging Face datasets drop it): put the metadata back (SCHEMAS.md) to train on its kept chains, each with its prompt"
		}
		return d, fmt.Errorf("read %s: no column %q (or input_ids); its columns are %s: %s", path, column, strings.Join(names, ", "), hint)
	}
	promptIdx := schema.FieldIndices("prompt")
	base := 0 // the file's record number of the batch's first row
	nullAt := func(col arrow.Array, name string) error {
		for i := 0; i < col.Len(); i++ {
			if col.IsNull(i) {
				return fmt.Errorf("read %s: record %d: column %q is null: give the row a value or remove it", path, base+i, name)
			}
		}
		return nil
	}
	strs := func(col arrow.Array, name string) ([]string, error) {
		value, ok := stringValue(col)
		if !ok {
			return nil, fmt.Errorf("read %s: column %q is %s, want a string", path, name, col.DataType())
		}
		out := make([]string, col.Len())
		for i := range out {
			s, valid := value(i)
			if !valid {
				return nil, fmt.Errorf("read %s: record %d: column %q is null: give the row a value or remove it", path, base+i, name)
			}
			out[i] = s
		}
		return out, nil
	}
	for r, rec := range recs {
		if r > 0 {
			base += int(recs[r-1].NumRows())
		}
		col := rec.Column(idx[0])
		if l, ok := col.(array.ListLike); ok && name == "input_ids" {
			if err := nullAt(l, name); err != nil {
				return d, err
			}
			for i := 0; i < l.Len(); i++ {
				s, e := l.ValueOffsets(i)
				row := make([]int64, 0, e-s)
				for k := s; k < e; k++ {
					if l.ListValues().IsNull(int(k)) {
						return d, fmt.Errorf("read %s: record %d: column %q: id %d of the row is null: give every id a value", path, base+i, name, k-s)
					}
					switch v := l.ListValues().(type) {
					case *array.Int64:
						row = append(row, v.Value(int(k)))
					case *array.Int32:
						row = append(row, int64(v.Value(int(k))))
					default:
						return d, fmt.Errorf("read %s: column %q holds lists of %s, want int32/int64", path, name, v.DataType())
					}
				}
				d.IDs = append(d.IDs, row)
			}
			continue
		}
		texts, err := strs(col, name)
		if err != nil {
			return d, err
		}
		d.Texts = append(d.Texts, texts...)
		if len(promptIdx) > 0 {
			ps, err := strs(rec.Column(promptIdx[0]), "prompt")
			if err != nil {
				return d, err
			}
			d.Prompts = append(d.Prompts, ps...)
		}
	}
	if d.Texts == nil && d.IDs == nil {
		return d, fmt.Errorf("read %s: no rows", path)
	}
	return d, nil
}

// stringValue reads row i of a text column: string, large_string,
// string_view (Polars' IPC files) or dictionary-encoded strings (a pandas
// category column, pyarrow's read_dictionary); false where the row (or its
// dictionary entry) is null. ok is false for a column of another type.
func stringValue(col arrow.Array) (value func(int) (string, bool), ok bool) {
	switch c := col.(type) {
	case *array.String:
		return func(i int) (string, bool) { return c.Value(i), c.IsValid(i) }, true
	case *array.LargeString:
		return func(i int) (string, bool) { return c.Value(i), c.IsValid(i) }, true
	case *array.StringView:
		return func(i int) (string, bool) { return c.Value(i), c.IsValid(i) }, true
	case *array.Dictionary:
		dict, ok := stringValue(c.Dictionary())
		if !ok {
			return nil, false
		}
		return func(i int) (string, bool) {
			if c.IsNull(i) {
				return "", false
			}
			return dict(c.GetValueIndex(i))
		}, true
	}
	return nil, false
}

package datasets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// A null text, prompt or input_ids row is refused, naming the file and the
// row: it once read as "" and was dropped without a word (transformers and
// datasets fail on None).
func TestReadTextSetRefusesNulls(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"text.jsonl":   "{\"text\": \"hello\"}\n{\"text\": null}\n",
		"prompt.jsonl": "{\"prompt\": \"q\", \"completion\": \"a\"}\n{\"prompt\": null, \"completion\": \"b\"}\n",
		"ids.jsonl":    "{\"input_ids\": [1, 2]}\n{\"input_ids\": null}\n",
	} {
		path := writeFile(t, filepath.Join(dir, name), body)
		_, err := ReadTextSet(path, "text")
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "null") {
			t.Errorf("%s: got %v", name, err)
		}
	}

	// Arrow: the second batch's first row is null (record 2 of the file).
	path := filepath.Join(dir, "text.arrow")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "text", Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
	w, err := ipc.NewFileWriter(f, ipc.WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	for _, batch := range [][]*string{{ptr("a b"), ptr("c d")}, {nil, ptr("e f")}} {
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		sb := b.Field(0).(*array.StringBuilder)
		for _, s := range batch {
			if s == nil {
				sb.AppendNull()
			} else {
				sb.Append(*s)
			}
		}
		rec := b.NewRecordBatch()
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
		b.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = ReadTextSet(path, "text")
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `record 2: column "text" is null`) {
		t.Errorf("arrow: got %v", err)
	}
}

func ptr(s string) *string { return &s }

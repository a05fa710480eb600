package datasets_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/tagpr/tagpr/datasets"
)

// The built-in benchmark's examples written to Parquet (LaMP's shape: an
// input, a profile, an output) and read back, then the profile items most
// relevant to one input by BM25, as prompts take them.
func Example() {
	data, err := datasets.Synth(datasets.SynthConfig{Seed: 1, Users: 6, QueriesPerUser: 1, ProfileMin: 4, ProfileMax: 4,
		Tasks: []string{datasets.SynthTag}, DevFrac: 0.2, TestFrac: 0.2})
	if err != nil {
		log.Fatal(err)
	}
	train := data.Set(datasets.SynthTag, "train")
	dir, err := os.MkdirTemp("", "datasets-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "train.parquet") // or .arrow (Arrow IPC)
	if err := datasets.WriteRows(path, train.Examples, func(p string) (*datasets.Writer[datasets.Example], error) {
		return datasets.CreateExamples(p, train.Task)
	}); err != nil {
		log.Fatal(err)
	}
	back, task, err := datasets.ReadExamples(path, datasets.ReadOptions{})
	if err != nil {
		log.Fatal(err)
	}
	e := &back[0]
	fmt.Printf("%s: %d examples, profile fields %v, %d profile items each\n", task.Name, len(back), task.ProfileFields, len(e.Profile))
	fmt.Println("two most relevant items:", datasets.TopKBM25(task, e, 2))
	// Output:
	// synth_tag: 4 examples, profile fields [description tag], 4 profile items each
	// two most relevant items: [1 3]
}

// A fine-tuning set of your own in Arrow: prompt/completion rows written with
// arrow-go through a BatchWriter (the file appears whole at Commit) and read
// back as the TextSet that pipeline.LMRows tokenizes (only the completions
// are trained on). JSON lines and Parquet read the same way.
func ExampleReadTextSet() {
	dir, err := os.MkdirTemp("", "textset-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "train.arrow")
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "prompt", Type: arrow.BinaryTypes.String},
		{Name: "completion", Type: arrow.BinaryTypes.String}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"2+2=", "The capital of France is"}, nil)
	b.Field(1).(*array.StringBuilder).AppendValues([]string{" 4", " Paris"}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()
	w, err := datasets.CreateBatchWriter(path, schema)
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		w.Abort()
		log.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		log.Fatal(err)
	}
	set, err := datasets.ReadTextSet(path, "") // "": the text column, here "completion"
	if err != nil {
		log.Fatal(err)
	}
	for i := range set.Texts {
		fmt.Printf("%q → %q\n", set.Prompts[i], set.Texts[i])
	}
	// Output:
	// "2+2=" → " 4"
	// "The capital of France is" → " Paris"
}

package datasets_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

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
	// two most relevant items: [0 1]
}

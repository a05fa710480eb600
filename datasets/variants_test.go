package datasets

import (
	"path/filepath"
	"strings"
	"testing"
)

// A null where tagpr's schema requires a value (a column or a list item's
// field), in a file pyarrow wrote (scripts/datasets/make_variant_fixtures.py),
// is refused naming the file, the record and the place: it once read as "",
// 0 or false without a word (an empty chat message trained on, a reward of 0,
// a prediction of model "").
func TestReadRefusesNullsInRequiredColumns(t *testing.T) {
	dir := filepath.Join("testdata", "variants")
	for _, c := range []struct {
		file, want string
		read       func(string) error
	}{
		{"nulls_chains.parquet", `record 2 (id "c"): prompt[1].content is null`, func(p string) error { _, err := ReadChains(p, ReadOptions{}); return err }},
		{"nulls_rollouts.arrow", `record 1 (id "p1"): reward is null`, func(p string) error { _, err := ReadRollouts(p, ReadOptions{}); return err }},
		{"nulls_predictions.feather", `record 1 (id "101"): model is null`, func(p string) error { _, err := ReadPredictions(p, ReadOptions{}); return err }},
	} {
		path := filepath.Join(dir, c.file)
		err := c.read(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming the file and %q", c.file, err, c.want)
		}
	}
}

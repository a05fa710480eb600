package rewardmodel

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/ort"
)

// trainedPRMU is one PRMU trained on the demo's synthetic benchmark, shared
// by the tests (training is the slow part).
var trainedPRMU struct {
	once sync.Once
	p    *PRMU
	res  PRMUTrainResult
	dev  []TaskAccuracy
	data *datasets.SynthData
	err  error
}

// quietSession runs the small PRMU graphs on one thread that does not spin,
// which keeps them fast on a loaded machine.
var quietSession = ort.Options{IntraOpThreads: 1, ConfigEntries: map[string]string{ort.SpinKey: "0"}}

func sharedPRMU(t *testing.T) (*PRMU, PRMUTrainResult, *datasets.SynthData) {
	t.Helper()
	if err := ort.Init(""); err != nil {
		t.Fatalf("ONNX Runtime is needed (make setup): %v", err)
	}
	s := &trainedPRMU
	s.once.Do(func() {
		if s.data, s.err = datasets.Synth(datasets.DefaultSynthConfig()); s.err != nil {
			return
		}
		s.p, s.res, s.dev, s.err = TrainSynthPRMU(context.Background(), s.data,
			PRMURecipe{Config: PRMUConfig{Seed: 1}, Train: PRMUTrainOptions{Steps: 1000, Seed: 1, Session: quietSession}})
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.p, s.res, s.data
}

func TestPRMULearnsUsersPreferences(t *testing.T) {
	p, res, _ := sharedPRMU(t)
	n := len(res.Losses)
	first, last := meanOf(res.Losses[:20]), meanOf(res.Losses[n-20:])
	t.Logf("trained %d steps on %d pairs in %v: loss %.3f → %.3f, train pair accuracy %.2f → %.2f, %d skipped",
		n, p.Info.Pairs, res.Duration.Round(1e6), first, last, meanOf(res.Accuracies[:20]), meanOf(res.Accuracies[n-20:]), res.Skipped)
	if !(last < 0.6*first) || res.Skipped > 0 {
		t.Fatalf("training loss %.3f → %.3f (%d steps skipped): want it to fall below 60%%", first, last, res.Skipped)
	}
	// Dev users are unseen in training: only their profiles tell them apart.
	// Chance is 0.5. A rating is predictable from the profile alone only up
	// to the review's tone (the response is the rating, not the review), so
	// its ceiling is about 0.7.
	want := map[string]float64{datasets.SynthTag: 0.9, datasets.SynthRate: 0.6, datasets.SynthGen: 0.9}
	for _, a := range trainedPRMU.dev {
		t.Logf("%s dev pair accuracy %.3f on %d pairs", a.Task, a.Accuracy, a.Pairs)
		if a.Accuracy < want[a.Task] || a.Pairs < 100 {
			t.Errorf("%s dev pair accuracy %.3f on %d pairs, want >= %.2f on at least 100", a.Task, a.Accuracy, a.Pairs, want[a.Task])
		}
	}
	if len(trainedPRMU.dev) != 3 || p.Info.DevPairs != 3*trainedPRMU.dev[0].Pairs {
		t.Fatalf("dev accuracies %+v, info %+v", trainedPRMU.dev, p.Info)
	}
}

func meanOf(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// The score depends on whose profile it reads: with every dev user's tag
// profile swapped for another user's, the gold tag is no longer preferred.
func TestPRMUReadsTheProfile(t *testing.T) {
	p, _, data := sharedPRMU(t)
	set := data.Set(datasets.SynthTag, "dev")
	pairs, err := PRMUPairs(set.Task, set.Examples, 0, 7)
	if err != nil {
		t.Fatal(err)
	}
	swapped, err := SwapProfiles(pairs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pairs {
		if swapped[i].User == pairs[i].User || slices.Equal(swapped[i].Profile, pairs[i].Profile) {
			t.Fatalf("pair %d kept user %s's profile", i, pairs[i].User)
		}
	}
	own, err := p.PairAccuracy(context.Background(), pairs)
	if err != nil {
		t.Fatal(err)
	}
	other, err := p.PairAccuracy(context.Background(), swapped)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("synth_tag dev pair accuracy: own profile %.3f, another user's %.3f", own, other)
	if other > 0.75 || own-other < 0.2 {
		t.Fatalf("pair accuracy with another user's profile %.3f vs own %.3f: the score ignores the profile", other, own)
	}
}

// A row's score does not depend on the rows batched with it (padding is
// masked), nor on chunking past the scoring batch size.
func TestPRMUScoreIsPerRow(t *testing.T) {
	p, _, data := sharedPRMU(t)
	set := data.Set(datasets.SynthGen, "dev")
	pairs, err := PRMUPairs(set.Task, set.Examples, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	var profiles [][]string
	var responses []string
	for len(responses) < prmuScoreBatch+40 {
		for _, q := range pairs {
			profiles = append(profiles, q.Profile[:1+len(responses)%len(q.Profile)])
			responses = append(responses, q.Chosen+strings.Repeat(" indeed", len(responses)%5))
		}
	}
	// An empty response is a response: it scores, it does not fail.
	profiles, responses = append(profiles, pairs[0].Profile), append(responses, "")
	all, err := p.Score(context.Background(), profiles, responses)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 7, prmuScoreBatch + 3, len(responses) - 1} {
		one, err := p.Score(context.Background(), profiles[i:i+1], responses[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(one[0]-all[i]) > 1e-5 {
			t.Fatalf("row %d scores %v alone, %v in a batch", i, one[0], all[i])
		}
		// A blank profile item is padding: it changes nothing.
		blank, err := p.Score(context.Background(), [][]string{append([]string{" "}, profiles[i]...)}, responses[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(blank[0]-all[i]) > 1e-5 {
			t.Fatalf("row %d scores %v with a blank profile item, %v without", i, blank[0], all[i])
		}
	}
}

// Attention pooling trains as well as the mean on the tag task, and ignores
// blank items too.
func TestPRMUAttentionPooling(t *testing.T) {
	_, _, data := sharedPRMU(t)
	p, res, accs, err := TrainSynthPRMU(context.Background(), data,
		PRMURecipe{Config: PRMUConfig{Seed: 2, Pool: PoolAttention}, Train: PRMUTrainOptions{Steps: 400, Seed: 2, Session: quietSession}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	t.Logf("attention pooling: %d steps in %v, dev pair accuracy %+v", len(res.Losses), res.Duration.Round(1e6), accs)
	if accs[0].Task != datasets.SynthTag || accs[0].Accuracy < 0.9 {
		t.Fatalf("attention pooling: dev accuracies %+v, want synth_tag >= 0.9", accs)
	}
	prof := []string{"description: a film about jokes and ghosts in a village; tag: comedy", "description: a film about clues and tears in the city; tag: drama"}
	s, err := p.Score(context.Background(), [][]string{prof, append(prof, "", "  ")}, []string{"comedy", "comedy"})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(s[0]-s[1]) > 1e-5 {
		t.Fatalf("blank items changed the attention-pooled score: %v vs %v", s[0], s[1])
	}
	if _, err := BuildPRMU(PRMUConfig{Vocab: 10, Pool: "max"}); err == nil || !strings.Contains(err.Error(), "pool") {
		t.Fatalf("unknown pooling: %v", err)
	}
}

func TestPRMUSaveLoadRoundTrip(t *testing.T) {
	p, _, data := sharedPRMU(t)
	set := data.Set(datasets.SynthTag, "test")
	pairs, err := PRMUPairs(set.Task, set.Examples, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	profiles, responses := [][]string{}, []string{}
	for _, q := range pairs[:20] {
		profiles, responses = append(profiles, q.Profile, q.Profile), append(responses, q.Chosen, q.Rejected)
	}
	want, err := p.Score(context.Background(), profiles, responses)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "prmu")
	if err := p.Save(dir); err != nil {
		t.Fatal(err)
	}
	q, err := LoadPRMU(dir, ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	got, err := q.Score(context.Background(), profiles, responses)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("score %d: %v after load, %v before", i, got[i], want[i])
		}
	}
	if q.Config != p.Config || q.Info != p.Info {
		t.Fatalf("config %+v / info %+v after load, %+v / %+v before", q.Config, q.Info, p.Config, p.Info)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("saved %d files, want model.onnx, tokenizer.json and prmu.json only (no temp files)", len(entries))
	}
}

// Broken directories fail to load with an error naming the file; nothing panics.
func TestPRMULoadRefusesBrokenFiles(t *testing.T) {
	p, _, _ := sharedPRMU(t)
	good := filepath.Join(t.TempDir(), "good")
	if err := p.Save(good); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(good, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cfg := read(PRMUConfigFile)
	cases := []struct {
		name, file, content, want string
	}{
		{"missing config", PRMUConfigFile, "", PRMUConfigFile},
		{"config not json", PRMUConfigFile, "{", PRMUConfigFile},
		{"wrong format", PRMUConfigFile, strings.Replace(cfg, prmuFormat, "other/9", 1), "format"},
		{"unknown field", PRMUConfigFile, strings.Replace(cfg, `"format"`, `"colour": 1, "format"`, 1), "colour"},
		{"negative size", PRMUConfigFile, strings.Replace(cfg, `"hidden": 64`, `"hidden": -1`, 1), "hidden"},
		{"vocab mismatch", PRMUConfigFile, strings.Replace(cfg, `"embed": 64`, `"embed": 32`, 1), "prmu.embed"},
		{"tokenizer broken", PRMUTokenizerFile, `{"model": 3}`, PRMUTokenizerFile},
		{"model truncated", PRMUModelFile, read(PRMUModelFile)[:100], PRMUModelFile},
		{"model missing", PRMUModelFile, "", PRMUModelFile},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{PRMUConfigFile, PRMUTokenizerFile, PRMUModelFile} {
				if f == c.file && c.content == "" {
					continue
				}
				content := read(f)
				if f == c.file {
					content = c.content
				}
				if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			q, err := LoadPRMU(dir, ort.Options{})
			if err == nil {
				q.Close()
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestPRMUScoreRefusesMalformedInput(t *testing.T) {
	p, _, _ := sharedPRMU(t)
	ctx := context.Background()
	checkScoreRefusals(t, p)
	if _, _, err := TrainPRMU(ctx, PRMUConfig{}, p.Tokenizer(), nil, PRMUTrainOptions{}); err == nil {
		t.Fatal("trained on no pairs")
	}
	bad := []PRMUPair{{Profile: nil, Chosen: "a", Rejected: "b"}}
	if _, _, err := TrainPRMU(ctx, PRMUConfig{}, p.Tokenizer(), bad, PRMUTrainOptions{}); err == nil || !strings.Contains(err.Error(), "pair 0 has an empty profile") {
		t.Fatalf("pair without profile: %v", err)
	}
	if _, _, err := TrainPRMU(ctx, PRMUConfig{Hidden: -2}, p.Tokenizer(), []PRMUPair{{Profile: []string{"x"}, Chosen: "a", Rejected: "b"}}, PRMUTrainOptions{}); err == nil || !strings.Contains(err.Error(), "hidden") {
		t.Fatalf("bad config: %v", err)
	}
	if _, err := NewPRMU(PRMUConfig{Vocab: 10}, p.Tokenizer(), p.Model(), ort.Options{}); err == nil || !strings.Contains(err.Error(), "tokenizer has") {
		t.Fatalf("tokenizer larger than the embedding: %v", err)
	}
	closed, err := NewPRMU(p.Config, p.Tokenizer(), p.Model(), ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if _, err := closed.Score(ctx, [][]string{{"x"}}, []string{"y"}); err == nil {
		t.Fatal("a closed model scored")
	}
}

// checkScoreRefusals: Score and PairAccuracy refuse what every PRMU refuses.
func checkScoreRefusals(t *testing.T, p *PRMU) {
	t.Helper()
	ctx := context.Background()
	if _, err := p.Score(ctx, [][]string{{"tag: comedy"}}, []string{"comedy", "drama"}); err == nil || !strings.Contains(err.Error(), "1 profiles for 2 responses") {
		t.Fatalf("mismatched lengths: %v", err)
	}
	if _, err := p.Score(ctx, [][]string{{"tag: comedy"}, {}}, []string{"comedy", "drama"}); err == nil || !strings.Contains(err.Error(), "response 1 has an empty profile") {
		t.Fatalf("empty profile: %v", err)
	}
	if s, err := p.Score(ctx, nil, nil); err != nil || len(s) != 0 {
		t.Fatalf("no responses: %v %v", s, err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Score(done, [][]string{{"tag: comedy"}}, []string{"comedy"}); err == nil {
		t.Fatal("scored under a cancelled context")
	}
	if _, err := p.PairAccuracy(ctx, nil); err == nil {
		t.Fatal("accuracy of no pairs")
	}
}

// PRMU satisfies pipeline.PRMUScorer (pipeline imports rewardmodel, so the
// interface is restated here).
var _ interface {
	Score(ctx context.Context, profiles [][]string, responses []string) ([]float64, error)
} = (*PRMU)(nil)

// A label task's rejected answer is another label than the gold as the task
// reads it: a gold with spaces around it (" [1]\n", which import and LaMP's
// evaluator accept) or a rating "4.0" was "rejected" for its own label
// ("[1]", "4") about once in |labels| pairs.
func TestPRMUPairsRejectAnotherLabel(t *testing.T) {
	for _, c := range []struct{ task, gold, same string }{{"1", " [1]\n", "[1]"}, {"3", "4.0", "4"}} {
		task, err := datasets.ParseTask(c.task)
		if err != nil {
			t.Fatal(err)
		}
		var exs []datasets.Example
		for i := range 40 {
			exs = append(exs, datasets.Example{ID: strconv.Itoa(i), Input: "q", Output: c.gold, HasOutput: true,
				Profile: []datasets.ProfileItem{{ID: "p", Fields: make([]string, len(task.ProfileFields))}}})
		}
		pairs, err := PRMUPairs(task, exs, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range pairs {
			if p.Rejected == c.same {
				t.Fatalf("LaMP-%s pair %d: gold %q rejected for %q, the same answer", c.task, i, p.Chosen, p.Rejected)
			}
		}
	}
}

// With retrieval recency the prompts (and RL's PRMU scoring) read a user's
// newest items: PRMU's pairs read the same ones, not the BM25 top-k the
// pairs always took.
func TestPRMUPairsFollowRetrieval(t *testing.T) {
	task, err := datasets.ParseTask("7")
	if err != nil {
		t.Fatal(err)
	}
	var exs []datasets.Example
	for i := range 4 {
		exs = append(exs, datasets.Example{ID: strconv.Itoa(i), User: strconv.Itoa(i), Input: "Paraphrase the following tweet: sunny beach day", Output: "tweet " + strconv.Itoa(i), HasOutput: true,
			Profile: []datasets.ProfileItem{
				{ID: "old", Fields: []string{"sunny beach day again"}, Date: "2019-01-01", HasDate: true},
				{ID: "new", Fields: []string{"late train home"}, Date: "2021-05-01", HasDate: true}}})
	}
	recipe := PRMURecipe{TopK: 1, Recency: true}
	pairs, err := setPairs([]ExampleSet{{Task: task, Examples: exs}}, recipe.TopK, recipe.Recency, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pairs {
		if len(p.Profile) != 1 || !strings.Contains(p.Profile[0], "late train home") {
			t.Fatalf("pair %d with recency: profile %q, want the newest item", i, p.Profile)
		}
	}
	bm25, err := SetPairs([]ExampleSet{{Task: task, Examples: exs}}, 1, 1)
	if err != nil || !strings.Contains(bm25[0].Profile[0], "sunny beach day again") {
		t.Fatalf("pairs by BM25: %v %q, want the item like the input", err, bm25[0].Profile)
	}
	a, _ := recipe.Settings()
	b, _ := PRMURecipe{TopK: 1}.Settings()
	if reflect.DeepEqual(a, b) {
		t.Fatal("a recency PRMU has a BM25 PRMU's settings: a finished one would be reused after retrieval changed")
	}
}

func TestPRMUPairs(t *testing.T) {
	data, err := datasets.Synth(datasets.SynthConfig{Seed: 3, Users: 30, QueriesPerUser: 3, ProfileMin: 4, ProfileMax: 6, DevFrac: 0.2, TestFrac: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range data.Config.Tasks {
		set := data.Set(task, "train")
		pairs, err := PRMUPairs(set.Task, set.Examples, 3, 9)
		if err != nil {
			t.Fatal(err)
		}
		if len(pairs) != len(set.Examples) {
			t.Fatalf("%s: %d pairs for %d examples", task, len(pairs), len(set.Examples))
		}
		again, _ := PRMUPairs(set.Task, set.Examples, 3, 9)
		if !reflect.DeepEqual(pairs, again) {
			t.Fatalf("%s: the same seed made other pairs", task)
		}
		users := map[string]string{} // output → a user who gave it
		for _, e := range set.Examples {
			users[e.Output] = e.User
		}
		for i, p := range pairs {
			e := set.Examples[i]
			if p.Chosen != e.Output || p.Rejected == p.Chosen || len(p.Profile) != 3 {
				t.Fatalf("%s pair %d: %+v for gold %q", task, i, p, e.Output)
			}
			// The benchmark's profiles carry no dates (docs/benchmark.md): every field, named.
			if !strings.HasPrefix(p.Profile[0], set.Task.ProfileFields[0]+": ") || !strings.Contains(p.Profile[0], "; "+set.Task.ProfileFields[1]+": ") {
				t.Fatalf("%s profile item %q is not in the prompts' form", task, p.Profile[0])
			}
			if set.Task.Labels == nil && users[p.Rejected] == e.User {
				t.Fatalf("%s pair %d: the rejected title %q is the same user's", task, i, p.Rejected)
			}
			if set.Task.Labels != nil && !slices.Contains(set.Task.Labels, p.Rejected) {
				t.Fatalf("%s pair %d: rejected %q is not a label", task, i, p.Rejected)
			}
		}
	}
	if _, err := PRMUPairs(data.Sets[0].Task, nil, 0, 1); err == nil {
		t.Fatal("pairs from no examples")
	}
}

func TestPolicySamplePairs(t *testing.T) {
	prof := []string{"tag: comedy"}
	pairs, err := PolicySamplePairs(prof, "comedy", []string{"drama", "comedy", " drama ", "horror", "action"}, []float64{0, 1, 0, 0.2, 0.9}, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	var rejected []string
	for _, p := range pairs {
		if p.Chosen != "comedy" || len(p.Profile) != 1 {
			t.Fatalf("pair %+v", p)
		}
		rejected = append(rejected, p.Rejected)
	}
	if !slices.Equal(rejected, []string{"drama", "horror"}) {
		t.Fatalf("rejected %q, want the low-scoring distinct answers drama, horror", rejected)
	}
	if _, err := PolicySamplePairs(prof, "x", []string{"a"}, nil, 1); err == nil {
		t.Fatal("mismatched rewards accepted")
	}
	if _, err := PolicySamplePairs(nil, "x", nil, nil, 1); err == nil {
		t.Fatal("empty profile accepted")
	}
}

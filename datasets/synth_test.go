package datasets

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
)

var defaultTaxonomy = []string{"understand_task", "recall_history", "identify_patterns", "infer_preference",
	"analyze_input", "match_preference", "draft", "verify", "conclude"}

func TestSynthDeterministic(t *testing.T) {
	cfg := DefaultSynthConfig()
	cfg.Users = 30
	dirs := []string{t.TempDir(), t.TempDir()}
	for _, dir := range dirs {
		d, err := Synth(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Write(dir); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dirs[0], "*", "*"))
	if len(files) != 3*3*4 {
		t.Fatalf("wrote %d files, want 36: %v", len(files), files)
	}
	for _, f := range files {
		a, _ := os.ReadFile(f)
		b, err := os.ReadFile(filepath.Join(dirs[1], strings.TrimPrefix(f, dirs[0])))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s differs between two runs with the same seed", f)
		}
	}
	// The files read back as what was generated, in both Arrow and LaMP JSON.
	d, _ := Synth(cfg)
	set := d.Set(SynthRate, "dev")
	rows, task, err := ReadExamples(filepath.Join(dirs[0], SynthRate, "dev.arrow"), ReadOptions{})
	if err != nil || task.Name != SynthRate || normalize(rows) != normalize(set.Examples) {
		t.Fatalf("dev.arrow does not hold the generated rows: %v", err)
	}
	tmp := filepath.Join(t.TempDir(), "re.arrow")
	if _, err := ImportLaMP(ImportOptions{Task: task, Questions: filepath.Join(dirs[0], SynthRate, "dev_questions.json"),
		Outputs: filepath.Join(dirs[0], SynthRate, "dev_outputs.json"), Split: "dev", Scheme: "synth", Out: tmp}); err != nil {
		t.Fatal(err)
	}
	re, _, err := ReadExamples(tmp, ReadOptions{})
	for i := range re {
		re[i].User = set.Examples[i].User // LaMP JSON carries no user key
	}
	if err != nil || normalize(re) != normalize(set.Examples) {
		t.Fatalf("LaMP JSON does not hold the generated rows: %v", err)
	}
	cfg.Seed = 2
	other, _ := Synth(cfg)
	if normalize(other.Sets[0].Examples) == normalize(d.Sets[0].Examples) {
		t.Fatal("another seed gave the same data")
	}
}

func TestSynthSplitsAndChains(t *testing.T) {
	d, err := Synth(DefaultSynthConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{SynthTag, SynthRate, SynthGen} {
		users := map[string]string{}
		for _, split := range Splits {
			set := d.Set(task, split)
			if set == nil || len(set.Examples) == 0 {
				t.Fatalf("%s %s is empty", task, split)
			}
			for i, e := range set.Examples {
				if prev, ok := users[e.User]; ok && prev != split {
					t.Fatalf("%s: user %s is in %s and %s", task, e.User, prev, split)
				}
				users[e.User] = split
				c := set.Chains[i]
				if c.ID != e.ID || c.Chain != e.Chain || c.Gold != e.Output || !strings.HasSuffix(e.Chain, "</think>\n<answer> "+c.Answer+"</answer>") {
					t.Fatalf("%s: chain of %s does not end in its answer: %q", task, e.ID, e.Chain)
				}
				// The teacher answers the gold, or misses as TestSynthTitleCloserMiss checks.
				if correct := c.Answer == e.Output; correct != c.Verdicts[0].Pass || !correct && task != SynthGen {
					t.Fatalf("%s: answer %q for gold %q (verdict %+v)", e.ID, c.Answer, e.Output, c.Verdicts[0])
				}
				last := -1
				for _, s := range c.Spans {
					k := indexOf(defaultTaxonomy, s.Tag)
					if k <= last {
						t.Fatalf("%s: tag %s out of taxonomy order in %q", task, s.Tag, e.Chain)
					}
					last = k
					if e.Chain[s.Start:s.End] != s.Text {
						t.Fatalf("span offsets wrong in %s", e.ID)
					}
				}
				if c.Spans[len(c.Spans)-1].Tag != "conclude" || len(c.Spans) < 5 {
					t.Fatalf("%s: chain %q lacks steps", task, e.Chain)
				}
				// The chain concludes what it answers.
				if concl := strings.TrimSpace(c.Spans[len(c.Spans)-1].Text); !strings.HasSuffix(concl, c.Answer) {
					t.Fatalf("%s: chain concludes %q but answers %q", e.ID, concl, c.Answer)
				}
			}
		}
	}
}

// The teacher's missed closing words change title chains only: the examples
// (inputs, gold, profiles) are the same at every rate, so the profile rules
// score the same; a missed title drops the user's closing word from every
// step that names it; the missed share is near the rate; bad rates are refused.
func TestSynthTitleCloserMiss(t *testing.T) {
	cfg := DefaultSynthConfig()
	cfg.Users = 200
	generate := func(rate float64) (string, *SynthData) {
		c := cfg
		c.TitleCloserMiss = rate
		d, err := Synth(c)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, set := range d.Sets {
			for _, e := range set.Examples {
				e.Chain = ""
				fmt.Fprintf(&b, "%+v\n", e)
			}
		}
		return b.String(), d
	}
	never, d0 := generate(0)
	for _, set := range d0.Sets {
		for _, c := range set.Chains {
			if c.Answer != c.Gold {
				t.Fatalf("rate 0: %s answers %q for gold %q: %q", c.ID, c.Answer, c.Gold, c.Chain)
			}
		}
	}
	for _, rate := range []float64{0.65, 1} {
		examples, d := generate(rate)
		if examples != never {
			t.Fatalf("rate %v changed the examples, not only the chains", rate)
		}
		missed, titles := 0, 0
		for _, set := range d.Sets {
			for i, c := range set.Chains {
				if set.Task.Name != SynthGen {
					if c.Chain != d0.Set(set.Task.Name, set.Split).Chains[i].Chain {
						t.Fatalf("rate %v: %s is not a title but its chain changed: %q", rate, c.ID, c.Chain)
					}
					continue
				}
				titles++
				if c.Answer != c.Gold {
					missed++
					if c.Answer != c.Gold[:strings.LastIndexByte(c.Gold, ' ')] || strings.Contains(c.Chain, c.Gold) ||
						strings.Contains(c.Chain, " and end with ") {
						t.Fatalf("rate %v: %s's chain keeps or names the closing word it missed: %q", rate, c.ID, c.Chain)
					}
				}
			}
		}
		if share := float64(missed) / float64(titles); share < rate-0.05 || share > rate+0.05 {
			t.Fatalf("rate %v: %d of %d title chains miss the closing word (%.3f)", rate, missed, titles, share)
		}
	}
	for _, bad := range []float64{-0.1, 1.5, math.NaN()} {
		c := cfg
		c.TitleCloserMiss = bad
		if _, err := Synth(c); err == nil || !strings.Contains(err.Error(), "title closer miss") {
			t.Fatalf("rate %v: got %v, want a refusal naming the title closer miss", bad, err)
		}
	}
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// The profile decides the answer: the rule that reads it reproduces every
// gold exactly, while the best profile-blind rule matches few of them. The
// gap in LaMP metrics is measured in pipeline (TestSynthProfileGap), which
// owns the metrics.
func TestSynthBaselinesPredict(t *testing.T) {
	cfg := DefaultSynthConfig()
	cfg.Users = 300
	d, err := Synth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{SynthTag, SynthRate, SynthGen} {
		train, test := d.Set(task, "train"), d.Set(task, "test")
		blind, err := BlindBaseline(train, test)
		if err != nil {
			t.Fatal(err)
		}
		reader, err := ProfileBaseline(test)
		if err != nil {
			t.Fatal(err)
		}
		if len(blind) != len(test.Examples) || len(reader) != len(test.Examples) {
			t.Fatalf("%s: %d and %d predictions for %d examples", task, len(blind), len(reader), len(test.Examples))
		}
		blindExact := 0
		for i, e := range test.Examples {
			if reader[i] != e.Output {
				t.Fatalf("%s %s: the profile-reading rule says %q, gold %q", task, e.ID, reader[i], e.Output)
			}
			if blind[i] == e.Output {
				blindExact++
			}
		}
		if frac := float64(blindExact) / float64(len(blind)); frac > 0.7 {
			t.Errorf("%s: the profile-blind rule is exactly right on %.2f of test; the profile should matter more", task, frac)
		}
	}
	if _, err := BlindBaseline(d.Set(SynthTag, "train"), d.Set(SynthRate, "test")); err == nil {
		t.Fatal("baseline across tasks accepted")
	}
}

// Size of the benchmark for a tiny model: vocabulary and prompt length.
func TestSynthIsSmall(t *testing.T) {
	d, _ := Synth(DefaultSynthConfig())
	vocab := map[string]bool{}
	maxWords := 0
	for _, s := range d.Sets {
		for _, e := range s.Examples {
			n := 0
			for _, text := range append([]string{e.Input, e.Chain}, profileTexts(&e)...) {
				for _, w := range strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && r != '_' }) {
					vocab[w] = true // letters only: digits and punctuation are a tokenizer's base alphabet
				}
				n += len(strings.Fields(text))
			}
			maxWords = max(maxWords, n)
		}
	}
	t.Logf("vocabulary %d words (letters and _ only); longest example (input+profile+chain) %d words", len(vocab), maxWords)
	if len(vocab) > 200 || maxWords > 400 {
		t.Fatalf("benchmark too big for a tiny model: %d words, %d per example", len(vocab), maxWords)
	}
}

func profileTexts(e *Example) []string {
	var out []string
	for _, p := range e.Profile {
		out = append(out, p.Fields...)
		out = append(out, p.Date)
	}
	return out
}

// Chains cite profile items in the order a BM25-ranked prompt shows them,
// so "the first items" of a chain are the first items the model reads.
func TestSynthChainsRecallShownOrder(t *testing.T) {
	cfg := DefaultSynthConfig()
	cfg.Users = 40
	d, err := Synth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reordered := 0
	for _, task := range []string{SynthRate} {
		set := d.Set(task, "train")
		for _, e := range set.Examples {
			order := TopKBM25(set.Task, &e, len(e.Profile))
			if order[0] != 0 || order[1] != 1 {
				reordered++
			}
			var recall string
			for _, s := range ParseChainSpans(e.Chain) {
				if s.Tag == "recall_history" {
					recall = s.Text
				}
			}
			first := fmt.Sprintf("tone %+d gave %s", reviewTone(e.Profile[order[0]].Fields[0]), e.Profile[order[0]].Fields[1])
			if !strings.Contains(recall, first) {
				t.Fatalf("%s recalls %q; the prompt's first item is %q", e.ID, recall, first)
			}
		}
	}
	if reordered == 0 {
		t.Fatal("BM25 never reordered a profile: the test checks nothing")
	}
}

// A NaN or infinite dev/test share is refused naming it (a NaN passed every
// comparison and split the users by garbage).
func TestSynthRefusesNonFiniteShares(t *testing.T) {
	for _, c := range []struct{ dev, test float64 }{{math.NaN(), 0.1}, {0.1, math.NaN()}, {math.Inf(1), 0}, {-0.1, 0.1}} {
		cfg := DefaultSynthConfig()
		cfg.Users, cfg.DevFrac, cfg.TestFrac = 10, c.dev, c.test
		if _, err := Synth(cfg); err == nil {
			t.Errorf("dev %v test %v: want an error", c.dev, c.test)
		}
	}
}

package pipeline

import (
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/rewardmodel"
	"github.com/tagpr/tagpr/tokenize"
)

func smallSynth(t *testing.T) *datasets.SynthData {
	t.Helper()
	cfg := datasets.DefaultSynthConfig()
	cfg.Users, cfg.QueriesPerUser = 12, 2
	d, err := datasets.Synth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPartsRetrieveAndTruncateOnlyProfile(t *testing.T) {
	d := smallSynth(t)
	set := d.Set(datasets.SynthTag, "train")
	ex := &set.Examples[0]
	tx := rewardmodel.DefaultTaxonomy()
	p := Parts(set.Task, ex, tx, PromptOptions{TopK: 4}, true)
	if len(p.Profile) != 4 || p.Input != ex.Input || p.Answer != ex.Chain {
		t.Fatalf("parts %+v", p)
	}
	for _, l := range set.Task.Labels {
		if !strings.Contains(p.Instruction, l) {
			t.Fatalf("instruction lacks label %q: %s", l, p.Instruction)
		}
	}
	// The first item is the one BM25 ranks highest for this input.
	best := datasets.TopKBM25(set.Task, ex, 1)[0]
	if !strings.Contains(p.Profile[0], ex.Profile[best].Fields[0]) {
		t.Fatalf("first profile item %q is not the BM25 best %q", p.Profile[0], ex.Profile[best].Fields[0])
	}
	var corpus []string
	for _, e := range set.Examples {
		corpus = append(corpus, e.Input, e.Chain)
	}
	tok, err := tokenize.Train(tokenize.TrainOptions{Corpus: corpus, VocabSize: 600, SpecialTokens: []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}})
	if err != nil {
		t.Fatal(err)
	}
	full, err := tok.EncodePrompt(p, tokenize.DefaultPromptLayout, 0)
	if err != nil {
		t.Fatal(err)
	}
	cut, err := tok.EncodePrompt(p, tokenize.DefaultPromptLayout, len(full.IDs)-5)
	if err != nil {
		t.Fatal(err)
	}
	if cut.ProfileKept >= 4 || !strings.Contains(cut.Text, ex.Input) || !strings.Contains(cut.Text, "<answer>") {
		t.Fatalf("truncation kept %d items; text %q", cut.ProfileKept, cut.Text)
	}
	if err := (PromptOptions{Retrieval: "magic"}).Validate(); err == nil {
		t.Fatal("unknown retrieval accepted")
	}
}

// TestMeasureProfileUse counts what prompts kept of their profile against
// each prompt encoded alone, and says it in the report's note.
func TestMeasureProfileUse(t *testing.T) {
	d := smallSynth(t)
	set := d.Set(datasets.SynthTag, "dev")
	tx := rewardmodel.DefaultTaxonomy()
	var corpus []string
	var exs []*datasets.Example
	for i := range set.Examples {
		corpus = append(corpus, set.Examples[i].Input, set.Examples[i].Chain)
		exs = append(exs, &set.Examples[i])
	}
	tok, err := tokenize.Train(tokenize.TrainOptions{Corpus: corpus, VocabSize: 600, SpecialTokens: []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}})
	if err != nil {
		t.Fatal(err)
	}
	all, err := MeasureProfileUse(tok, set.Task, exs, tx, PromptOptions{TopK: 4})
	if err != nil {
		t.Fatal(err)
	}
	if all.Prompts != len(exs) || all.Cut != 0 || all.Kept != all.Retrieved || all.Retrieved == 0 || !strings.HasSuffix(all.Note("prompts", "k", 0), "(none dropped)") {
		t.Fatalf("no budget: %+v, %q", all, all.Note("prompts", "k", 0))
	}
	// A budget between the bare prompt and the full one cuts some items.
	o := PromptOptions{TopK: 4}
	full, err := tok.EncodePrompt(Parts(set.Task, exs[0], tx, o, false), tokenize.DefaultPromptLayout, 0)
	if err != nil {
		t.Fatal(err)
	}
	o.MaxTokens = len(full.IDs) - 20
	u, err := MeasureProfileUse(tok, set.Task, exs, tx, o)
	if err != nil {
		t.Fatal(err)
	}
	want := ProfileUse{Prompts: len(exs), Fewest: 4}
	for _, ex := range exs {
		p := Parts(set.Task, ex, tx, o, false)
		e, err := tok.EncodePrompt(p, tokenize.DefaultPromptLayout, o.MaxTokens)
		if err != nil {
			t.Fatal(err)
		}
		want.Retrieved += len(p.Profile)
		want.Kept += e.ProfileKept
		want.Fewest = min(want.Fewest, e.ProfileKept)
		if e.ProfileKept < len(p.Profile) {
			want.Cut++
		}
	}
	if u != want || u.Cut == 0 {
		t.Fatalf("measured %+v, want %+v (with some prompts cut)", u, want)
	}
	note := u.Note("prompts", "retrieval.max_prompt_tokens", o.MaxTokens)
	if !strings.HasPrefix(note, "prompts held ") || !strings.Contains(note, "dropped items to fit retrieval.max_prompt_tokens") {
		t.Fatalf("note %q", note)
	}
}

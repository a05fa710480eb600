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

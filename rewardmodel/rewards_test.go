package rewardmodel

import (
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"
)

func TestRougeMatchesReferencePackage(t *testing.T) {
	raw, err := os.ReadFile("testdata/rouge_reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Cases []struct {
			Target, Prediction     string
			Rouge1, Rouge2, RougeL float64
		}
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Cases) < 10 {
		t.Fatalf("only %d reference cases", len(ref.Cases))
	}
	for _, c := range ref.Cases {
		got := []float64{RougeN(c.Target, c.Prediction, 1).F, RougeN(c.Target, c.Prediction, 2).F, RougeL(c.Target, c.Prediction).F}
		want := []float64{c.Rouge1, c.Rouge2, c.RougeL}
		for i := range got {
			if math.Abs(got[i]-want[i]) > 1e-12 {
				t.Errorf("%q vs %q: metric %d = %v, rouge-score says %v", c.Target, c.Prediction, i, got[i], want[i])
			}
		}
	}
}

const goodChain = `<think>
<understand_task>Pick the tag for the movie.</understand_task>
<recall_history>The user tagged three heist films as "crime".</recall_history>
<infer_preference>The user files capers under crime.</infer_preference>
<conclude>This is a caper, so crime.</conclude>
</think>
<answer>crime</answer>`

func TestCheckTagsAcceptsWellFormedChain(t *testing.T) {
	c := CheckTags(goodChain, DefaultTaxonomy())
	if c.Reward() != 1 || len(c.Problems) != 0 {
		t.Fatalf("reward %v, problems %v", c.Reward(), c.Problems)
	}
	if c.Answer != "crime" || len(c.Spans) != 4 || c.Spans[1].Tag != "recall_history" {
		t.Fatalf("answer %q spans %+v", c.Answer, c.Spans)
	}
	if got := goodChain[c.Spans[0].Start:c.Spans[0].End]; got != "Pick the tag for the movie." {
		t.Fatalf("span offsets point at %q", got)
	}
}

func TestCheckTagsCountsEachBrokenConstraint(t *testing.T) {
	tx := DefaultTaxonomy()
	cases := []struct {
		name, text string
		want       float64
		problem    string
	}{
		{"unknown tag", strings.Replace(goodChain, "understand_task>", "guess>", 2), 0.8, "unknown tag <guess>"},
		{"missing required", strings.Replace(goodChain, "<infer_preference>The user files capers under crime.</infer_preference>\n", "", 1), 0.8, "required tag <infer_preference> missing"},
		{"order", swapLines(goodChain, 2, 3), 0.8, "<recall_history> comes after <infer_preference>"},
		{"two answers", goodChain + "\n<answer>drama</answer>", 0.8, "exactly one <answer>"},
		{"answer inside think", strings.Replace(goodChain, "</think>\n<answer>crime</answer>", "<answer>crime</answer></think>", 1), 0.6, "<answer> inside <think>"},
		{"unclosed", strings.Replace(goodChain, "</conclude>", "", 1), 0.8, "never closed"},
		{"no think", "<answer>crime</answer>", 0, "<think>"},
		{"garbage", "ab cd ef", 0, "no step tags"},
		{"empty think", "<think>\n</think>\n<answer>crime</answer>", 0.4, "no step tags"},
		{"step after the answer", goodChain + "\n<recall_history>more", 0.8, "<recall_history> outside <think>"},
		{"step before think", "<conclude>crime</conclude>\n" + goodChain, 0.8, "<conclude> outside <think>"},
		{"step in the answer", strings.Replace(goodChain, "<answer>crime</answer>", "<answer><conclude>crime</conclude></answer>", 1), 0.8, "<conclude> outside <think>"},
		{"markup in the answer is the answer's", strings.Replace(goodChain, "<answer>crime</answer>", "<answer><i>crime</i></answer>", 1), 1, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := CheckTags(c.text, tx)
			if math.Abs(got.Reward()-c.want) > 1e-12 || !strings.Contains(strings.Join(got.Problems, "; "), c.problem) {
				t.Fatalf("reward %v (want %v), problems %v (want one containing %q)", got.Reward(), c.want, got.Problems, c.problem)
			}
		})
	}
}

func TestTaskRewardsAndComposite(t *testing.T) {
	if TaskReward(Classification, " [1] ", "[1]") != 1 || TaskReward(Classification, "[2]", "[1]") != 0 {
		t.Fatal("classification exact match")
	}
	if got := TaskReward(Rating, "2", "5"); math.Abs(got-0.25) > 1e-12 {
		t.Fatalf("rating 2 vs 5 = %v, want 0.25", got)
	}
	for _, bad := range []string{"five", "0", "6", "", "NaN"} {
		if TaskReward(Rating, bad, "3") != 0 {
			t.Fatalf("unparseable rating %q scored", bad)
		}
	}
	c := Score(Classification, goodChain, "crime", DefaultTaxonomy())
	c.PRMU = PRMUProbability(0)
	if got, want := Guided(c, DefaultWeights()), 1*1*1+0.3*1+0.5*0.5; math.Abs(got-want) > 1e-12 {
		t.Fatalf("guided = %v, want %v", got, want)
	}
	broken := Score(Classification, "crime", "crime", DefaultTaxonomy())
	if broken.Format != 0 || Exploratory(broken) != 0 {
		t.Fatalf("an answer outside the format earned task reward: %+v", broken)
	}
	if err := (Weights{Alpha: -1}).Validate(); err == nil {
		t.Fatal("negative weight accepted")
	}
	if err := (Taxonomy{{Name: "a"}, {Name: "a"}}).Validate(); err == nil {
		t.Fatal("duplicate tag accepted")
	}
	if err := DefaultTaxonomy().Validate(); err != nil {
		t.Fatal(err)
	}
}

func swapLines(s string, i, j int) string {
	lines := strings.Split(s, "\n")
	lines[i], lines[j] = lines[j], lines[i]
	return strings.Join(lines, "\n")
}

// A taxonomy whose required tags carry no order (order 0: "no ordering
// constraint") or that has no required tag imposes no order: a well-formed
// chain meets every constraint (it met at most 4 of 5, so every chain failed
// the chains filter's tags_valid with no reason given).
func TestCheckTagsTaxonomyWithoutOrder(t *testing.T) {
	chain := "<think>\n<recall_history>a</recall_history>\n<conclude>b</conclude>\n</think>\n<answer>x</answer>"
	for name, tx := range map[string]Taxonomy{
		"required, no order": {{Name: "recall_history", Required: true}, {Name: "conclude", Required: true}},
		"nothing required":   {{Name: "recall_history"}, {Name: "conclude"}},
	} {
		if c := CheckTags(chain, tx); c.Reward() != 1 || !c.RequiredOrder {
			t.Errorf("%s: R_tag %v, problems %v: want 1", name, c.Reward(), c.Problems)
		}
		if c := CheckTags("<think>\n</think>\n<answer>x</answer>", tx); c.RequiredOrder || c.RequiredTags {
			t.Errorf("%s: a chain without steps meets required_order or required_tags: %+v", name, c)
		}
		if c := CheckTags("x", tx); c.Reward() != 0 {
			t.Errorf("%s: a text without tags has R_tag %v, want 0", name, c.Reward())
		}
	}
}

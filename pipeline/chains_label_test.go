package pipeline

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/rewardmodel"
)

func TestParseFreeChain(t *testing.T) {
	cases := []struct {
		name, text string
		steps      []string
		answer     string
		hasAnswer  bool
	}{
		{"paragraphs and answer line",
			"First, the task.\nStill first.\n\n2. The user's history shows comedy.\n\nThey like comedy.\n\nFinal answer: comedy\n",
			[]string{"First, the task. Still first.", "The user's history shows comedy.", "They like comedy."}, "comedy", true},
		{"lines and answer element",
			"<think>\n- look at the profile\n- the user prefers 4\n</think>\n<answer> 4 </answer>",
			[]string{"look at the profile", "the user prefers 4"}, "4", true},
		{"sentences, last answer line wins",
			"Step 1: Answer: is not here. The user likes drama! So drama.\nAnswer: drama",
			[]string{"Answer: is not here.", "The user likes drama!", "So drama."}, "drama", true},
		{"no answer", "One step.\n\nAnother step.", []string{"One step.", "Another step."}, "", false},
		{"empty", "  \n ", nil, "", false},
	}
	for _, c := range cases {
		fc := ParseFreeChain(c.text)
		if !reflect.DeepEqual(fc.Steps, c.steps) || fc.Answer != c.answer || fc.HasAnswer != c.hasAnswer {
			t.Errorf("%s: got %q answer %q (%v), want %q answer %q (%v)", c.name, fc.Steps, fc.Answer, fc.HasAnswer, c.steps, c.answer, c.hasAnswer)
		}
	}
}

func TestRuleLabellerMapsStepsToTaxonomy(t *testing.T) {
	steps := []string{
		"We need to pick the tag the user would give.",
		"In the user's history, five past movies are tagged comedy.",
		"Comedy shows up most of the time.",
		"So the user prefers comedy.",
		"This movie has jokes and robots.",
		"Comedy fits the user's taste best.",
		"Let me double-check the label set.",
		"Comedy.",
	}
	want := []string{"understand_task", "recall_history", "identify_patterns", "infer_preference", "analyze_input", "match_preference", "verify", "conclude"}
	tx := rewardmodel.DefaultTaxonomy()
	got, err := RuleLabeller{Taxonomy: tx}.Label(context.Background(), [][]string{steps, {"Something vague.", "Something else.", "Done."}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got[0].Tags, want) {
		t.Fatalf("tags %q, want %q", got[0].Tags, want)
	}
	if w := []string{"understand_task", "analyze_input", "conclude"}; !reflect.DeepEqual(got[1].Tags, w) {
		t.Fatalf("position fallback: tags %q, want %q", got[1].Tags, w)
	}
	chain := AssembleChain(want, steps, "comedy")
	check := rewardmodel.CheckTags(chain, tx)
	if check.Reward() != 1 || check.Answer != "comedy" || len(check.Spans) != len(steps) {
		t.Fatalf("assembled chain fails the tag check: %v\n%s", check.Problems, chain)
	}
	// A custom taxonomy: rules for tags it lacks are ignored.
	small := rewardmodel.Taxonomy{{Name: "recall_history", Required: true, Order: 1}, {Name: "final", Required: true, Order: 2}}
	got, _ = RuleLabeller{Taxonomy: small}.Label(context.Background(), [][]string{{"The user prefers X.", "Past items were X.", "X."}})
	if w := []string{"final", "recall_history", "final"}; !reflect.DeepEqual(got[0].Tags, w) {
		t.Fatalf("custom taxonomy: tags %q, want %q", got[0].Tags, w)
	}
}

// scriptedTeacher answers each prompt with reply(prompt), offline.
type scriptedTeacher struct {
	reply func(p []datasets.Message) string
	calls int
}

func (s *scriptedTeacher) Name() string { return "scripted" }

func (s *scriptedTeacher) Complete(_ context.Context, prompts [][]datasets.Message) ([]Completion, error) {
	s.calls++
	out := make([]Completion, len(prompts))
	for i, p := range prompts {
		out[i].Text = s.reply(p)
	}
	return out, nil
}

func TestTeacherLabeller(t *testing.T) {
	tx := rewardmodel.DefaultTaxonomy()
	teacher := &scriptedTeacher{reply: func(p []datasets.Message) string {
		c := p[0].Content
		switch {
		case strings.Contains(c, "1. bad tag"):
			return "1: recall_history\n2: musing\n3: conclude"
		case strings.Contains(c, "1. missing"):
			return "1: recall_history\n3: conclude"
		}
		if !strings.Contains(c, "- infer_preference: state what this user prefers") || !strings.Contains(c, "2. b") {
			t.Errorf("labelling prompt lacks the taxonomy or the steps:\n%s", c)
		}
		return "Sure.\n1: recall_history\n2) <infer_preference>\n3. conclude\n"
	}}
	l := TeacherLabeller{Teacher: teacher, Taxonomy: tx}
	got, err := l.Label(context.Background(), [][]string{{"a", "b", "c"}, {"bad tag", "x", "y"}, {"missing", "x", "y"}})
	if err != nil {
		t.Fatal(err)
	}
	if w := []string{"recall_history", "infer_preference", "conclude"}; !reflect.DeepEqual(got[0].Tags, w) || got[0].Problem != "" {
		t.Fatalf("labels %+v, want %q", got[0], w)
	}
	if !strings.Contains(got[1].Problem, `"musing", not in the taxonomy`) || got[1].Tags != nil {
		t.Fatalf("unknown tag: %+v", got[1])
	}
	if !strings.Contains(got[2].Problem, "step 2 of 3 has no tag") {
		t.Fatalf("missing step: %+v", got[2])
	}
	if teacher.calls != 1 || l.Name() != "teacher:scripted" {
		t.Fatalf("%d teacher calls (want one batch), name %q", teacher.calls, l.Name())
	}
}

package pipeline

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/rewardmodel"
)

// FreeChain is a teacher's untagged reasoning cut into steps, with its answer.
type FreeChain struct {
	Steps     []string
	Answer    string
	HasAnswer bool
}

var (
	answerTag  = regexp.MustCompile(`(?s)<answer>(.*?)</answer>`)
	answerLine = regexp.MustCompile(`(?im)^[ \t]*(?:\*\*)?(?:final answer|answer)(?:\*\*)?[ \t]*[:：][ \t]*(.+?)[ \t]*$`)
	stepMarker = regexp.MustCompile(`(?i)^(?:step[ \t]*\d+[.:)]?|\d+[.)]|[-*•])[ \t]*`)
	paraBreak  = regexp.MustCompile(`\n[ \t]*\n`)
	sentence   = regexp.MustCompile(`[.!?](?:\s+|$)`)
)

// ParseFreeChain finds the answer (an <answer> element, else the last
// "Answer: …" line, else the text after </think>, where reasoning models
// write their final answer) and cuts the reasoning before it into steps:
// paragraphs, else lines, else sentences.
func ParseFreeChain(text string) FreeChain {
	var fc FreeChain
	reasoning := text
	if m := answerTag.FindStringSubmatchIndex(text); m != nil {
		fc.Answer, fc.HasAnswer = strings.TrimSpace(text[m[2]:m[3]]), true
		reasoning = text[:m[0]]
	} else if ms := answerLine.FindAllStringSubmatchIndex(text, -1); ms != nil {
		m := ms[len(ms)-1]
		fc.Answer, fc.HasAnswer = strings.TrimSpace(text[m[2]:m[3]]), true
		reasoning = text[:m[0]]
	} else if i := strings.LastIndex(text, "</think>"); i >= 0 && strings.TrimSpace(text[i+len("</think>"):]) != "" {
		fc.Answer, fc.HasAnswer = strings.TrimSpace(text[i+len("</think>"):]), true
		reasoning = text[:i]
	}
	reasoning = strings.NewReplacer("<think>", "", "</think>", "").Replace(reasoning)
	fc.Steps = SplitSteps(reasoning)
	return fc
}

// SplitSteps cuts reasoning into steps: by blank lines when there are
// several paragraphs, else by lines, else by sentences. List markers
// ("1.", "- ", "Step 2:") are dropped.
func SplitSteps(text string) []string {
	text = strings.TrimSpace(strings.ReplaceAll(text, "\r\n", "\n"))
	if text == "" {
		return nil
	}
	parts := paraBreak.Split(text, -1)
	if len(parts) == 1 {
		parts = strings.Split(text, "\n")
	}
	if len(parts) == 1 {
		parts = nil
		last := 0
		for _, m := range sentence.FindAllStringIndex(text, -1) {
			parts = append(parts, text[last:m[0]+1])
			last = m[1]
		}
		if last < len(text) {
			parts = append(parts, text[last:])
		}
	}
	var steps []string
	for _, p := range parts {
		p = strings.Join(strings.Fields(stepMarker.ReplaceAllString(strings.TrimSpace(p), "")), " ")
		if p != "" {
			steps = append(steps, p)
		}
	}
	return steps
}

// AssembleChain writes labelled steps in the tagged-chain format (docs/formats.md).
func AssembleChain(tags, steps []string, answer string) string {
	var b strings.Builder
	b.WriteString("<think>\n")
	for i, s := range steps {
		fmt.Fprintf(&b, "<%s>%s</%s>\n", tags[i], s, tags[i])
	}
	b.WriteString("</think>\n<answer>" + answer + "</answer>")
	return b.String()
}

// Labels are the tags of one chain's steps; Problem says why labelling
// failed ("" = it did not), and then Tags is nil.
type Labels struct {
	Tags    []string
	Problem string
}

// Labeller gives every step of each chain a taxonomy tag.
type Labeller interface {
	Name() string // provenance: "rule" or "teacher:<teacher name>"
	Label(ctx context.Context, chains [][]string) ([]Labels, error)
}

// LabelRule maps a step to Tag when it contains any of Keywords
// (lower-case substrings).
type LabelRule struct {
	Tag      string
	Keywords []string
}

// DefaultLabelRules are tried in order; the first match wins, so the more
// specific steps (verify, draft, match) come before the broad ones.
var DefaultLabelRules = []LabelRule{
	{"verify", []string{"check", "verify", "double-check", "confirm", "make sure"}},
	{"draft", []string{"draft", "candidate", "could be", "one option"}},
	{"match_preference", []string{"matches", "match ", "fits", "consistent with", "aligns", "in line with"}},
	{"infer_preference", []string{"prefers", "prefer", "likes", "favour", "favor", "enjoys", "tends to", "taste"}},
	{"identify_patterns", []string{"pattern", "usually", "often", "always", "consistently", "most of", "majority", "every time"}},
	{"recall_history", []string{"history", "profile", "previous", "past", "earlier", "before", "has rated", "has tagged", "tagged", "rated", "wrote"}},
	{"analyze_input", []string{"this movie", "this review", "this post", "this article", "the input", "the new", "this paper", "the current"}},
	{"understand_task", []string{"the task", "asked to", "we need", "i need", "question asks", "goal is"}},
}

// RuleLabeller labels steps with keyword rules and position: the last step
// concludes, a first step no rule claims restates the task, any other
// unclaimed step analyzes the input. Rules whose tag is not in the taxonomy
// are ignored.
type RuleLabeller struct {
	Taxonomy rewardmodel.Taxonomy
	Rules    []LabelRule // nil: DefaultLabelRules
}

// Name is "rule".
func (RuleLabeller) Name() string { return "rule" }

// Label never fails: every step gets a tag.
func (l RuleLabeller) Label(_ context.Context, chains [][]string) ([]Labels, error) {
	out := make([]Labels, len(chains))
	for i, steps := range chains {
		out[i].Tags = l.labelSteps(steps)
	}
	return out, nil
}

func (l RuleLabeller) has(tag string) bool {
	for _, t := range l.Taxonomy {
		if t.Name == tag {
			return true
		}
	}
	return false
}

// pick returns the first of names the taxonomy has, else its last tag.
func (l RuleLabeller) pick(names ...string) string {
	for _, n := range names {
		if l.has(n) {
			return n
		}
	}
	return l.Taxonomy[len(l.Taxonomy)-1].Name
}

func (l RuleLabeller) labelSteps(steps []string) []string {
	rules := l.Rules
	if rules == nil {
		rules = DefaultLabelRules
	}
	tags := make([]string, len(steps))
	for i, s := range steps {
		if i == len(steps)-1 {
			tags[i] = l.pick("conclude")
			continue
		}
		low := strings.ToLower(s)
		for _, r := range rules {
			if tags[i] == "" && l.has(r.Tag) && containsAny(low, r.Keywords) {
				tags[i] = r.Tag
			}
		}
		if tags[i] == "" && i == 0 {
			tags[i] = l.pick("understand_task", "analyze_input")
		}
		if tags[i] == "" {
			tags[i] = l.pick("analyze_input")
		}
	}
	return tags
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// TeacherLabeller asks a teacher to tag each numbered step, one
// "N: tag" line per step.
type TeacherLabeller struct {
	Teacher  Teacher
	Taxonomy rewardmodel.Taxonomy
}

// Name is "teacher:" + the teacher's name.
func (l TeacherLabeller) Name() string { return "teacher:" + l.Teacher.Name() }

// LabelPrompt is the labelling request for one chain's steps.
func (l TeacherLabeller) LabelPrompt(steps []string) []datasets.Message {
	var b strings.Builder
	b.WriteString("Label each numbered reasoning step with exactly one tag from this list:\n")
	for _, t := range l.Taxonomy {
		fmt.Fprintf(&b, "- %s: %s\n", t.Name, t.Description)
	}
	b.WriteString("\nSteps:\n")
	for i, s := range steps {
		fmt.Fprintf(&b, "%d. %s\n", i+1, s)
	}
	b.WriteString("\nReply with one line per step, in order, formatted as \"<number>: <tag>\", and nothing else.")
	return []datasets.Message{{Role: "user", Content: b.String()}}
}

var labelLine = regexp.MustCompile(`(?m)^[ \t]*(\d+)[ \t]*[.:)\-][ \t]*<?([a-z][a-z0-9_]*)>?[ \t]*$`)

// ParseLabels reads "N: tag" lines for n steps, after the reply's
// reasoning (a reasoning model's <think>…</think>, which may try out
// labels before it settles).
func (l TeacherLabeller) ParseLabels(reply string, n int) Labels {
	if i := strings.LastIndex(reply, "</think>"); i >= 0 {
		reply = reply[i+len("</think>"):]
	}
	tags := make([]string, n)
	for _, m := range labelLine.FindAllStringSubmatch(reply, -1) {
		k, _ := strconv.Atoi(m[1])
		if k < 1 || k > n {
			return Labels{Problem: fmt.Sprintf("labeller: step %d of %d labelled", k, n)}
		}
		if !(RuleLabeller{Taxonomy: l.Taxonomy}).has(m[2]) {
			return Labels{Problem: fmt.Sprintf("labeller: step %d tagged %q, not in the taxonomy", k, m[2])}
		}
		tags[k-1] = m[2]
	}
	for i, t := range tags {
		if t == "" {
			return Labels{Problem: fmt.Sprintf("labeller: step %d of %d has no tag in the reply %q", i+1, n, snippet([]byte(reply)))}
		}
	}
	return Labels{Tags: tags}
}

// Label sends one labelling prompt per chain in one teacher batch; a reply
// that cannot be read is that chain's Problem, a failed request the error.
func (l TeacherLabeller) Label(ctx context.Context, chains [][]string) ([]Labels, error) {
	prompts := make([][]datasets.Message, len(chains))
	for i, steps := range chains {
		prompts[i] = l.LabelPrompt(steps)
	}
	replies, err := l.Teacher.Complete(ctx, prompts)
	if err != nil {
		return nil, fmt.Errorf("label steps: %w", err)
	}
	if len(replies) != len(prompts) {
		return nil, fmt.Errorf("label steps: teacher %s returned %d replies for %d prompts", l.Teacher.Name(), len(replies), len(prompts))
	}
	out := make([]Labels, len(chains))
	for i, r := range replies {
		if r.Cut != "" {
			out[i] = Labels{Problem: "labeller: " + r.Cut}
			continue
		}
		out[i] = l.ParseLabels(r.Text, len(chains[i]))
	}
	return out, nil
}

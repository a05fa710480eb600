package rewardmodel

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Tag is one step label of the reasoning taxonomy. The taxonomy is data: a
// run may load its own.
type Tag struct {
	Name        string `json:"name" mapstructure:"name"`
	Description string `json:"description" mapstructure:"description"`
	Required    bool   `json:"required" mapstructure:"required"`
	// Order ranks required tags: a chain must show required tags in
	// non-decreasing Order. 0 means "no ordering constraint".
	Order int `json:"order" mapstructure:"order"`
}

// Taxonomy is an ordered set of tags.
type Taxonomy []Tag

// DefaultTaxonomy is the recipe's default taxonomy (docs/formats.md).
func DefaultTaxonomy() Taxonomy {
	return Taxonomy{
		{Name: "understand_task", Description: "restate what the task asks for", Order: 1},
		{Name: "recall_history", Description: "recall relevant items from the user's profile", Required: true, Order: 2},
		{Name: "identify_patterns", Description: "find regularities across the recalled items", Order: 3},
		{Name: "infer_preference", Description: "state what this user prefers", Required: true, Order: 4},
		{Name: "analyze_input", Description: "analyze the current input", Order: 5},
		{Name: "match_preference", Description: "relate the input to the inferred preference", Order: 6},
		{Name: "draft", Description: "draft a candidate answer", Order: 7},
		{Name: "verify", Description: "check the draft against the preference and the label format", Order: 8},
		{Name: "conclude", Description: "state the final decision", Required: true, Order: 9},
	}
}

// Validate rejects empty or duplicate tag names and names that cannot appear in a tag.
func (tx Taxonomy) Validate() error {
	seen := map[string]bool{}
	for i, t := range tx {
		if !tagName.MatchString(t.Name) {
			return fmt.Errorf("taxonomy tag %d: name %q must match %s", i+1, t.Name, tagName)
		}
		if t.Name == "think" || t.Name == "answer" {
			return fmt.Errorf("taxonomy tag %d: %q is reserved", i+1, t.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("taxonomy: tag %q listed twice", t.Name)
		}
		seen[t.Name] = true
	}
	return nil
}

// Ordered is the names of the required tags with an order (> 0), in the
// order CheckTags wants them (by Order, ties in listing order): what a
// teacher must be told.
func (tx Taxonomy) Ordered() []string {
	var ts []Tag
	for _, t := range tx {
		if t.Required && t.Order > 0 {
			ts = append(ts, t)
		}
	}
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].Order < ts[j].Order })
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

func (tx Taxonomy) lookup(name string) (Tag, bool) {
	for _, t := range tx {
		if t.Name == name {
			return t, true
		}
	}
	return Tag{}, false
}

var (
	tagName  = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	tagToken = regexp.MustCompile(`</?([a-z][a-z0-9_]*)>`)
)

// Span is one tagged step of a chain, with byte offsets of its text.
type Span struct {
	Tag        string
	Text       string
	Start, End int
}

// TagCheck is the outcome of checking a completion against the tag rules.
// Each constraint is met or not; R_tag is the fraction met.
type TagCheck struct {
	WellFormed    bool // every tag closed, properly nested, inside one <think>…</think>
	KnownTags     bool // at least one step tag, and only taxonomy tags, inside <think>
	RequiredTags  bool // every required tag present
	RequiredOrder bool // at least one step tag, and the ordered required tags in taxonomy order
	OneAnswer     bool // exactly one <answer>…</answer>, after </think>
	Spans         []Span
	Answer        string
	Problems      []string // human-readable reasons for each unmet constraint
}

// Reward is R_tag ∈ [0,1]. A text with no tags meets none of the
// constraints: "only known tags" and "required tags in order" count only
// when there are tags to judge, so the reward never pays for their absence.
func (c TagCheck) Reward() float64 {
	met := 0
	for _, ok := range []bool{c.WellFormed, c.KnownTags, c.RequiredTags, c.RequiredOrder, c.OneAnswer} {
		if ok {
			met++
		}
	}
	return float64(met) / 5
}

// CheckTags parses a completion in the tagged-chain format (docs/formats.md)
// and checks every constraint.
func CheckTags(completion string, tx Taxonomy) TagCheck {
	c := TagCheck{WellFormed: true, KnownTags: true, RequiredOrder: true}
	problem := func(format string, a ...any) { c.Problems = append(c.Problems, fmt.Sprintf(format, a...)) }

	thinkOpen := strings.Index(completion, "<think>")
	thinkClose := strings.LastIndex(completion, "</think>")
	if thinkOpen < 0 || thinkClose < thinkOpen || strings.Count(completion, "<think>") != 1 || strings.Count(completion, "</think>") != 1 {
		c.WellFormed = false
		problem("want exactly one <think>…</think>")
	}
	// Scan the steps inside think (or the whole text when think is broken).
	body, base := completion, 0
	if c.WellFormed {
		base = thinkOpen + len("<think>")
		body = completion[base:thinkClose]
	}
	var open string
	openAt := 0
	var seenOrder []Tag
	present := map[string]bool{}
	for _, m := range tagToken.FindAllStringSubmatchIndex(body, -1) {
		full, name := body[m[0]:m[1]], body[m[2]:m[3]]
		if name == "think" || name == "answer" {
			if c.WellFormed && name == "answer" {
				c.WellFormed = false
				problem("<answer> inside <think>")
			}
			continue
		}
		closing := strings.HasPrefix(full, "</")
		switch {
		case !closing && open != "":
			c.WellFormed = false
			problem("<%s> opened inside <%s>", name, open)
		case !closing:
			open, openAt = name, m[1]
		case closing && name != open:
			c.WellFormed = false
			problem("</%s> closes nothing open", name)
		default:
			c.Spans = append(c.Spans, Span{Tag: name, Text: strings.TrimSpace(body[openAt:m[0]]), Start: base + openAt, End: base + m[0]})
			open = ""
		}
		if closing {
			continue
		}
		t, ok := tx.lookup(name)
		if !ok {
			if c.KnownTags {
				problem("unknown tag <%s>", name)
			}
			c.KnownTags = false
			continue
		}
		present[name] = true
		if t.Required && t.Order > 0 {
			seenOrder = append(seenOrder, t)
		}
	}
	if open != "" {
		c.WellFormed = false
		problem("<%s> never closed", open)
	}
	// A step tag belongs inside <think>: one of the taxonomy's before it or
	// after </think> (in or around the answer) breaks the format, and it is
	// not counted as a step. Other tag-like text there is the answer's own
	// (a title with <i>…</i>).
	if c.WellFormed {
		for _, out := range []string{completion[:thinkOpen], completion[thinkClose+len("</think>"):]} {
			for _, m := range tagToken.FindAllStringSubmatch(out, -1) {
				if _, step := tx.lookup(m[1]); step {
					c.WellFormed = false
					problem("%s outside <think>", m[0])
					break
				}
			}
		}
	}
	if len(present) == 0 && c.KnownTags {
		c.KnownTags = false
		problem("no step tags")
	}
	if len(present) == 0 {
		// No step to judge: the order constraint is not paid for its absence.
		// A taxonomy whose required tags carry no order (order 0) has nothing
		// to keep in order: any chain with steps meets it.
		c.RequiredOrder = false
	}
	c.RequiredTags = len(present) > 0 // a text without steps meets none, whatever the taxonomy requires
	for _, t := range tx {
		if t.Required && !present[t.Name] {
			c.RequiredTags = false
			problem("required tag <%s> missing", t.Name)
		}
	}
	for i := 1; i < len(seenOrder); i++ {
		if seenOrder[i].Order < seenOrder[i-1].Order {
			c.RequiredOrder = false
			problem("<%s> comes after <%s>", seenOrder[i].Name, seenOrder[i-1].Name)
			break
		}
	}
	c.Answer, c.OneAnswer = answerAfterThink(completion, thinkClose)
	if !c.OneAnswer {
		problem("want exactly one <answer>…</answer> after </think>")
	}
	return c
}

// answerAfterThink returns the answer text and whether there is exactly one
// <answer>…</answer>, placed after </think> (thinkClose; -1 if absent).
func answerAfterThink(completion string, thinkClose int) (string, bool) {
	if strings.Count(completion, "<answer>") != 1 || strings.Count(completion, "</answer>") != 1 {
		return "", false
	}
	a := strings.Index(completion, "<answer>")
	b := strings.Index(completion, "</answer>")
	if b < a || thinkClose < 0 || a < thinkClose {
		return "", false
	}
	return strings.TrimSpace(completion[a+len("<answer>") : b]), true
}

// ExtractAnswer returns the final answer of a completion: the text of its one
// <answer> after </think>. ok is false when the format is broken.
func ExtractAnswer(completion string) (string, bool) {
	return answerAfterThink(completion, strings.LastIndex(completion, "</think>"))
}

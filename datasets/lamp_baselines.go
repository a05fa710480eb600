package datasets

import (
	"math"
	"slices"
	"strconv"
)

// Reference points for LaMP, as the synthetic benchmark has its rules
// (BlindBaseline, ProfileBaseline): what a trained model must beat before
// its personalization means anything.

// LaMPBlindBaseline answers each of exs without its input or profile: the
// training split's most frequent label (classification; ties go to the
// label listed first) or its mean rating, rounded (rating). It returns nil
// for generation tasks, which have no answer without the input, and when
// train has no golds.
func LaMPBlindBaseline(t *Task, train, exs []Example) []string {
	var answer string
	switch t.Kind {
	case Classification:
		counts := map[string]int{}
		for _, e := range train {
			if e.HasOutput {
				counts[e.Output]++
			}
		}
		if len(counts) == 0 {
			return nil
		}
		answer = mostFrequent(t.Labels, counts)
	case Rating:
		var sum float64
		n := 0
		for _, e := range train {
			if v, err := strconv.ParseFloat(e.Output, 64); e.HasOutput && err == nil {
				sum, n = sum+v, n+1
			}
		}
		if n == 0 {
			return nil
		}
		answer = roundedRating(sum / float64(n))
	default:
		return nil
	}
	out := make([]string, len(exs))
	for i := range out {
		out[i] = answer
	}
	return out
}

// LaMPProfileBaseline answers each of exs from its user's profile by a
// rule: the candidate reference whose title matches the user's papers
// better (LaMP_1: the higher best BM25 score over the profile; [1] on a
// tie), the label the user's profile holds most often (LaMP_2M's tags,
// LaMP_2N's categories; ties go to the label listed first), the user's mean
// profile rating, rounded (LaMP_3), or the title (LaMP_7: the text) of the
// profile item BM25 ranks first for the input (LaMP_4 to LaMP_7: the
// user's most similar earlier item). An example whose profile gives nothing
// to go by takes blind's answer (LaMPBlindBaseline's, "" without one); nil
// for a task without a rule.
func LaMPProfileBaseline(t *Task, exs []Example, blind []string) []string {
	fallback := func(i int) string {
		if blind != nil {
			return blind[i]
		}
		return ""
	}
	out := make([]string, len(exs))
	switch {
	case t.Name == "LaMP_1":
		for i := range exs {
			out[i] = fallback(i)
			q := quoted(exs[i].Input) // the user's paper, then the two candidates
			if len(q) < 3 || len(exs[i].Profile) == 0 {
				continue
			}
			docs := make([]string, len(exs[i].Profile))
			for k := range exs[i].Profile {
				docs[k] = t.CorpusText(&exs[i].Profile[k])
			}
			out[i] = "[1]"
			if slices.Max(BM25Scores(q[2], docs)) > slices.Max(BM25Scores(q[1], docs)) {
				out[i] = "[2]"
			}
		}
	case t.Kind == Classification && t.FieldIndex(labelField(t)) >= 0:
		f := t.FieldIndex(labelField(t))
		for i := range exs {
			counts := map[string]int{}
			for _, p := range exs[i].Profile {
				counts[p.Fields[f]]++
			}
			if out[i] = mostFrequent(t.Labels, counts); out[i] == "" {
				out[i] = fallback(i)
			}
		}
	case t.Kind == Rating && t.FieldIndex("score") >= 0:
		f := t.FieldIndex("score")
		for i := range exs {
			var sum float64
			n := 0
			for _, p := range exs[i].Profile {
				if v, err := strconv.ParseFloat(p.Fields[f], 64); err == nil {
					sum, n = sum+v, n+1
				}
			}
			if out[i] = fallback(i); n > 0 {
				out[i] = roundedRating(sum / float64(n))
			}
		}
	case t.Kind == Generation:
		f := t.FieldIndex("title")
		if f < 0 {
			f = t.FieldIndex("text")
		}
		for i := range exs {
			if top := TopKBM25(t, &exs[i], 1); len(top) > 0 {
				out[i] = exs[i].Profile[top[0]].Fields[f]
			}
		}
	default:
		return nil
	}
	return out
}

// labelField is the profile field holding a classification task's label.
func labelField(t *Task) string {
	if t.FieldIndex("tag") >= 0 {
		return "tag"
	}
	return "category"
}

// mostFrequent is the label of labels with the highest count (the first
// listed on a tie), "" when none has any.
func mostFrequent(labels []string, counts map[string]int) string {
	best, bestN := "", 0
	for _, l := range labels {
		if counts[l] > bestN {
			best, bestN = l, counts[l]
		}
	}
	return best
}

// roundedRating is a mean rating rounded to the nearest of 1–5 (halves up).
func roundedRating(mean float64) string {
	return strconv.Itoa(int(min(5, max(1, math.Floor(mean+0.5)))))
}

package datasets

import (
	"slices"
	"testing"
)

func mustTask(t *testing.T, name string) *Task {
	t.Helper()
	task, err := ParseTask(name)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// profileOf makes profile items from rows of field values.
func profileOf(rows ...[]string) []ProfileItem {
	out := make([]ProfileItem, len(rows))
	for i, r := range rows {
		out[i] = ProfileItem{ID: string(rune('a' + i)), Fields: r}
	}
	return out
}

// LaMP's reference rules: the training split's majority label and mean
// rating without the profile; the profile's majority label, mean rating
// (halves up) and most similar item's title with it; the blind answer
// where the profile gives nothing; no rule where a task has none.
func TestLaMPBaselines(t *testing.T) {
	gold := func(outs ...string) []Example {
		var exs []Example
		for _, o := range outs {
			exs = append(exs, Example{Output: o, HasOutput: true})
		}
		return exs
	}
	tags := mustTask(t, "2M")
	exs := []Example{
		{Profile: profileOf([]string{"a", "comedy"}, []string{"b", "comedy"}, []string{"c", "action"})},
		{Profile: profileOf([]string{"a", "action"}, []string{"b", "comedy"})}, // a tie: comedy is listed before action
		{}, // no profile: the blind answer
	}
	blind := LaMPBlindBaseline(tags, gold("dystopia", "romance", "dystopia"), exs)
	if !slices.Equal(blind, []string{"dystopia", "dystopia", "dystopia"}) {
		t.Errorf("LaMP_2M blind %v", blind)
	}
	if got := LaMPProfileBaseline(tags, exs, blind); !slices.Equal(got, []string{"comedy", "comedy", "dystopia"}) {
		t.Errorf("LaMP_2M from the profile %v", got)
	}

	rate := mustTask(t, "3")
	exs = []Example{
		{Profile: profileOf([]string{"x", "5"}, []string{"y", "4"})},                     // 4.5 → 5
		{Profile: profileOf([]string{"x", "1"}, []string{"y", "1"}, []string{"z", "2"})}, // 1.33 → 1
		{},
	}
	blind = LaMPBlindBaseline(rate, gold("1", "2", "5"), exs) // 2.67 → 3
	if !slices.Equal(blind, []string{"3", "3", "3"}) {
		t.Errorf("LaMP_3 blind %v", blind)
	}
	if got := LaMPProfileBaseline(rate, exs, blind); !slices.Equal(got, []string{"5", "1", "3"}) {
		t.Errorf("LaMP_3 from the profile %v", got)
	}

	news := mustTask(t, "4")
	exs = []Example{{Input: "Generate a headline for the following article: the cat chased the dog across the park",
		Profile: profileOf([]string{"Markets fall", "stocks and bonds fell on rates"}, []string{"Cat and dog in the park", "a cat chased a dog in a park"},
			[]string{"Rain ahead", "a wet week is forecast"})}} // BM25 (rank_bm25's Okapi) gives no weight to a word in half of two items
	if got := LaMPBlindBaseline(news, gold("x"), exs); got != nil {
		t.Errorf("LaMP_4 blind %v; want none", got)
	}
	if got := LaMPProfileBaseline(news, exs, nil); !slices.Equal(got, []string{"Cat and dog in the park"}) {
		t.Errorf("LaMP_4 from the profile %v", got)
	}

	cite := mustTask(t, "1")
	exs = []Example{
		{Input: `For an author who has written the paper with the title "Graph kernels", which reference is related? Just answer with [1] or [2] without explanation. [1]: "Protein folding in water" [2]: "Fast graph kernels for molecules"`,
			Profile: profileOf([]string{"Graph kernels for molecules", "we compare graphs"}, []string{"Kernels on trees", "tree kernels"},
				[]string{"Deep nets", "a network"})},
		{}, // no profile: the blind answer
	}
	blind = LaMPBlindBaseline(cite, gold("[2]", "[1]", "[1]"), exs)
	if !slices.Equal(blind, []string{"[1]", "[1]"}) {
		t.Errorf("LaMP_1 blind %v", blind)
	}
	if got := LaMPProfileBaseline(cite, exs, blind); !slices.Equal(got, []string{"[2]", "[1]"}) {
		t.Errorf("LaMP_1 from the profile %v", got)
	}
	if got := LaMPBlindBaseline(tags, nil, []Example{{}}); got != nil {
		t.Errorf("blind without training golds %v; want none", got)
	}
}

package datasets

import (
	"fmt"
	"strings"
)

// TaskKind decides how answers are scored.
type TaskKind int

const (
	Classification TaskKind = iota // exact label match: accuracy, F1
	Rating                         // integer 1–5: MAE, RMSE
	Generation                     // free text: ROUGE-1, ROUGE-L
)

// Task describes one LaMP-format task.
//
// Naming: LaMP has had two different task 2s. "LaMP_2M" is movie tagging (the
// current LaMP-2, 15 tags, profile description/tag) and "LaMP_2N" is the original
// news categorization (15 categories, profile category/text/title). Both export
// as "LaMP_2", the name LaMP's own outputs files use; "2" alone means "2M"
// (docs/formats.md). The synthetic benchmark's tasks are "synth_tag", "synth_rate" and
// "synth_gen".
type Task struct {
	Name          string   // tagpr's name: LaMP_1, LaMP_2M, LaMP_2N, LaMP_3 … LaMP_7, synth_*
	OutputsName   string   // the "task" value of LaMP outputs files
	Kind          TaskKind //
	ProfileFields []string // the profile item fields besides id and date, in column order
	CorpusFields  []string // profile fields joined (by a space) into the text BM25 ranks
	Labels        []string // the closed label set of classification and rating tasks
	queryMarker   string   // LaMP's query is the input after this marker ("" = task 1's quoted titles)
}

var movieTags = []string{"sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia",
	"dark comedy", "classic", "psychology", "fantasy", "romance", "thought-provoking",
	"social commentary", "violence", "true story"}

var newsCategories = []string{"travel", "education", "parents", "style & beauty", "entertainment",
	"food & drink", "science & technology", "business", "sports", "healthy living", "women",
	"politics", "crime", "culture & arts", "religion"}

var ratings = []string{"1", "2", "3", "4", "5"}

var tasks = []*Task{
	{Name: "LaMP_1", OutputsName: "LaMP_1", Kind: Classification, ProfileFields: []string{"title", "abstract"},
		CorpusFields: []string{"title", "abstract"}, Labels: []string{"[1]", "[2]"}},
	{Name: "LaMP_2M", OutputsName: "LaMP_2", Kind: Classification, ProfileFields: []string{"description", "tag"},
		CorpusFields: []string{"description"}, Labels: movieTags, queryMarker: "description:"},
	{Name: "LaMP_2N", OutputsName: "LaMP_2", Kind: Classification, ProfileFields: []string{"category", "text", "title"},
		CorpusFields: []string{"title", "text"}, Labels: newsCategories, queryMarker: "article:"},
	{Name: "LaMP_3", OutputsName: "LaMP_3", Kind: Rating, ProfileFields: []string{"text", "score"},
		CorpusFields: []string{"text"}, Labels: ratings, queryMarker: "review:"},
	{Name: "LaMP_4", OutputsName: "LaMP_4", Kind: Generation, ProfileFields: []string{"title", "text"},
		CorpusFields: []string{"title", "text"}, queryMarker: "article:"},
	{Name: "LaMP_5", OutputsName: "LaMP_5", Kind: Generation, ProfileFields: []string{"title", "abstract"},
		CorpusFields: []string{"title", "abstract"}, queryMarker: ":"},
	{Name: "LaMP_6", OutputsName: "LaMP_6", Kind: Generation, ProfileFields: []string{"text", "title"},
		CorpusFields: []string{"text"}, queryMarker: ":"},
	{Name: "LaMP_7", OutputsName: "LaMP_7", Kind: Generation, ProfileFields: []string{"text"},
		CorpusFields: []string{"text"}, queryMarker: ":"},
	{Name: SynthTag, OutputsName: SynthTag, Kind: Classification, ProfileFields: []string{"description", "tag"},
		CorpusFields: []string{"description"}, Labels: synthTagNames(), queryMarker: "description:"},
	{Name: SynthRate, OutputsName: SynthRate, Kind: Rating, ProfileFields: []string{"text", "score"},
		CorpusFields: []string{"text"}, Labels: ratings, queryMarker: "review:"},
	{Name: SynthGen, OutputsName: SynthGen, Kind: Generation, ProfileFields: []string{"text", "title"},
		CorpusFields: []string{"text"}, queryMarker: ":"},
}

// Tasks lists every task tagpr knows, LaMP first.
func Tasks() []*Task { return tasks }

// ParseTask accepts a task's name ("LaMP_2M", "synth_tag") or a LaMP number
// ("1", "2M", "2N", "LaMP_3"); "2" and "LaMP_2" mean movie tagging.
func ParseTask(s string) (*Task, error) {
	name := s
	if !strings.HasPrefix(s, "synth_") {
		n := strings.ToUpper(s)
		n = strings.TrimPrefix(strings.TrimPrefix(n, "LAMP_"), "LAMP-")
		if n == "2" {
			n = "2M"
		}
		name = "LaMP_" + n
	}
	for _, t := range tasks {
		if t.Name == name {
			return t, nil
		}
	}
	return nil, fmt.Errorf("unknown task %q (want 1, 2M (movie tagging), 2N (news categorization), 3–7, synth_tag, synth_rate or synth_gen)", s)
}

// FieldIndex is the position of a profile field in ProfileFields, or -1.
func (t *Task) FieldIndex(name string) int {
	for i, f := range t.ProfileFields {
		if f == name {
			return i
		}
	}
	return -1
}

// Query extracts the retrieval query from an input the way LaMP does: task 1
// joins the two quoted candidate titles; the others take the text after the
// task's marker ("description:", "article:", "review:", or the first ":").
// When the marker is missing the whole input is the query.
func (t *Task) Query(input string) string {
	if t.queryMarker == "" {
		q := quoted(input)
		if len(q) < 3 {
			return strings.TrimSpace(input)
		}
		return q[1] + " " + q[2]
	}
	i := strings.Index(input, t.queryMarker)
	if i < 0 {
		return strings.TrimSpace(input)
	}
	return strings.TrimSpace(input[i+len(t.queryMarker):])
}

// quoted returns the strings between successive pairs of double quotes.
func quoted(s string) []string {
	var out []string
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(s[i+1:], '"')
		if j < 0 {
			return out
		}
		out = append(out, s[i+1:i+1+j])
		s = s[i+j+2:]
	}
}

// CorpusText is the text of one profile item that retrieval ranks.
func (t *Task) CorpusText(item *ProfileItem) string {
	var b strings.Builder
	for k, f := range t.CorpusFields {
		if k > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(item.Fields[t.FieldIndex(f)])
	}
	return b.String()
}

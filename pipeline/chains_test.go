package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/rewardmodel"
)

// chainExamples writes a tiny synthetic synth_tag train split: 8 examples,
// users u00000 (gold "mystery") and u00003 (gold "scifi"), 4 each.
func chainExamples(t *testing.T, dir string) (string, []datasets.Example) {
	t.Helper()
	d, err := datasets.Synth(datasets.SynthConfig{Seed: 7, Users: 4, QueriesPerUser: 4, ProfileMin: 3, ProfileMax: 4,
		Tasks: []string{datasets.SynthTag}, DevFrac: 0.25, TestFrac: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	set := d.Set(datasets.SynthTag, "train")
	if len(set.Examples) != 8 {
		t.Fatalf("synthetic split has %d examples, the test is written for 8", len(set.Examples))
	}
	path := filepath.Join(dir, "train.arrow")
	if err := datasets.WriteRows(path, set.Examples, func(p string) (*datasets.Writer[datasets.Example], error) {
		return datasets.CreateExamples(p, set.Task)
	}); err != nil {
		t.Fatal(err)
	}
	return path, set.Examples
}

// goodFree is a free-form chain the rule labeller tags understand_task,
// recall_history, infer_preference, analyze_input, conclude.
func goodFree(tag string) string {
	return fmt.Sprintf("We need to pick the tag this user gives the movie.\n\nIn the user's history, most past movies are tagged %[1]s.\n\n"+
		"So the user prefers %[1]s.\n\nThis movie has some %[1]s cues.\n\n%[1]s is the best choice.\n\nAnswer: %[1]s\n", tag)
}

// teacherScript is what the fake teacher answers for each example, by index.
func teacherScript(exs []datasets.Example) []string {
	noRecall := strings.Replace(exs[5].Chain, "<recall_history>"+between(exs[5].Chain, "<recall_history>", "</recall_history>")+"</recall_history>\n", "", 1)
	return []string{
		// 0 is kept; 1 is the same text, a duplicate; 2 has the wrong answer.
		0: goodFree("mystery"),
		1: goodFree("mystery"),
		2: goodFree("action"),
		// No answer, and no step the rules call infer_preference.
		3: "We need to pick a tag.\n\nThe profile shows mystery.\n\nHard to say.",
		// Already tagged and correct: kept as written.
		4: exs[4].Chain,
		// Tagged, but a required tag is missing.
		5: noRecall,
		// Too short, and no recall_history.
		6: "So the user prefers scifi.\n\nScifi.\n\nAnswer: scifi",
		// 4's chain again, but for case, spacing and punctuation.
		7: strings.Replace(exs[4].Chain, "the user favours scifi", "The user  favours SCIFI!", 1),
	}
}

func between(s, a, b string) string {
	i := strings.Index(s, a) + len(a)
	return s[i : i+strings.Index(s[i:], b)]
}

// fakeChatServer answers chat-completions requests from the script, finding
// the example by its input in the prompt; fail(i) makes example i's request a 400.
func fakeChatServer(t *testing.T, exs []datasets.Example, script []string, fail func(int) bool, hits *atomic.Int32) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		req := readChat(t, r)
		user := req.Messages[len(req.Messages)-1].Content
		for i, e := range exs {
			if strings.Contains(user, e.Input) {
				if fail != nil && fail(i) {
					http.Error(w, "quota exceeded", http.StatusBadRequest)
					return
				}
				chatReply(w, script[i])
				return
			}
		}
		t.Errorf("server: prompt matches no example:\n%s", user)
		http.Error(w, "unknown prompt", http.StatusBadRequest)
	}))
}

type wantRow struct {
	pass [4]bool // answer_correct, tags_valid, length, not_duplicate
	keep bool
	lab  string
}

var wantChainRows = []wantRow{
	{[4]bool{true, true, true, true}, true, "rule"},
	{[4]bool{true, true, true, false}, false, "rule"},
	{[4]bool{false, true, true, true}, false, "rule"},
	{[4]bool{false, false, true, true}, false, "rule"},
	{[4]bool{true, true, true, true}, true, "given"},
	{[4]bool{true, false, true, true}, false, "given"},
	{[4]bool{true, false, false, true}, false, "rule"},
	{[4]bool{true, true, true, false}, false, "given"},
}

func checkChainRows(t *testing.T, path string, exs []datasets.Example, teacher string) []datasets.Chain {
	t.Helper()
	rows, err := datasets.ReadChains(path, datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(exs) {
		t.Fatalf("%d rows, want %d", len(rows), len(exs))
	}
	for i, r := range rows {
		w := wantChainRows[i]
		if r.ID != exs[i].ID || r.Gold != exs[i].Output || !r.HasGold {
			t.Errorf("row %d: id %s gold %q, want %s %q", i, r.ID, r.Gold, exs[i].ID, exs[i].Output)
		}
		var got [4]bool
		names := make([]string, len(r.Verdicts))
		for k, v := range r.Verdicts {
			names[k] = v.Name
			if k < 4 {
				got[k] = v.Pass
			}
		}
		if want := []string{VerdictAnswer, VerdictTags, VerdictLength, VerdictDuplicate}; !reflect.DeepEqual(names, want) {
			t.Fatalf("row %d: verdicts %q, want %q", i, names, want)
		}
		if got != w.pass || r.Keep != w.keep {
			t.Errorf("row %d: verdicts %v keep %v, want %v keep %v (%+v)\n%s", i, got, r.Keep, w.pass, w.keep, r.Verdicts, r.Chain)
		}
		if wantT := teacher + "; labeller=" + w.lab; r.Teacher != wantT {
			t.Errorf("row %d: teacher %q, want %q", i, r.Teacher, wantT)
		}
		if len(r.Prompt) != 1 || r.Prompt[0].Role != "user" || !strings.Contains(r.Prompt[0].Content, exs[i].Input) || !strings.Contains(r.Prompt[0].Content, "User profile:") {
			t.Errorf("row %d: prompt %+v", i, r.Prompt)
		}
		for _, s := range r.Spans {
			if r.Chain[s.Start:s.End] != s.Text {
				t.Errorf("row %d: span %s [%d,%d) is %q in the chain, text %q", i, s.Tag, s.Start, s.End, r.Chain[s.Start:s.End], s.Text)
			}
		}
	}
	// The details say why.
	detail := func(i, k int) string { return rows[i].Verdicts[k].Detail }
	for _, c := range []struct {
		row, verdict int
		want         string
	}{
		{1, 3, "same text as the kept chain of " + exs[0].ID},
		{7, 3, "same text as the kept chain of " + exs[4].ID},
		{2, 0, "r_task 0.000, need 1.000"},
		{3, 0, "no answer found"},
		{3, 1, "required tag <infer_preference> missing"},
		{5, 1, "required tag <recall_history> missing"},
		{6, 2, "2 steps in [3, 16]"},
	} {
		if !strings.Contains(detail(c.row, c.verdict), c.want) {
			t.Errorf("row %d verdict %d detail %q, want it to mention %q", c.row, c.verdict, detail(c.row, c.verdict), c.want)
		}
	}
	return rows
}

func chainsConfig(examples, out string, teacher Teacher) ChainsConfig {
	return ChainsConfig{Examples: examples, Out: out, Teacher: teacher, Batch: 3, Filter: ChainFilter{MinSteps: 3}}
}

func TestGenerateChainsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	examples, exs := chainExamples(t, dir)
	var hits atomic.Int32
	srv := fakeChatServer(t, exs, teacherScript(exs), nil, &hits)
	defer srv.Close()
	teacher := testTeacher(t, srv.URL, nil)
	out := filepath.Join(dir, "chains.arrow")
	st, err := GenerateChains(context.Background(), chainsConfig(examples, out, teacher))
	if err != nil {
		t.Fatal(err)
	}
	if st != (ChainsStats{Done: 8, Rows: 8, Kept: 2, Merged: true}) || hits.Load() != 8 {
		t.Fatalf("stats %+v after %d requests", st, hits.Load())
	}
	rows := checkChainRows(t, out, exs, teacher.Name())
	wantChain := "<think>\n" +
		"<understand_task>We need to pick the tag this user gives the movie.</understand_task>\n" +
		"<recall_history>In the user's history, most past movies are tagged mystery.</recall_history>\n" +
		"<infer_preference>So the user prefers mystery.</infer_preference>\n" +
		"<analyze_input>This movie has some mystery cues.</analyze_input>\n" +
		"<conclude>mystery is the best choice.</conclude>\n" +
		"</think>\n<answer>mystery</answer>"
	if rows[0].Chain != wantChain || rows[0].Answer != "mystery" || len(rows[0].Spans) != 5 {
		t.Fatalf("row 0 chain:\n%s\nwant:\n%s", rows[0].Chain, wantChain)
	}
	if rows[4].Chain != exs[4].Chain {
		t.Fatalf("a tagged teacher chain was rewritten:\n%s", rows[4].Chain)
	}
	parts, _ := filepath.Glob(out + ".parts/part-*.arrow")
	if len(parts) != 3 {
		t.Fatalf("part files %q, want 3 (batches of 3)", parts)
	}

	// A second run has nothing to do and writes the same file.
	hits.Store(0)
	before, _ := os.ReadFile(out)
	st, err = GenerateChains(context.Background(), chainsConfig(examples, out, teacher))
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(out)
	if st != (ChainsStats{Skipped: 8, Rows: 8, Kept: 2, Merged: true}) || hits.Load() != 0 || string(before) != string(after) {
		t.Fatalf("rerun: stats %+v, %d requests, file changed: %v", st, hits.Load(), string(before) != string(after))
	}
}

func TestGenerateChainsResumesAfterFailure(t *testing.T) {
	dir := t.TempDir()
	examples, exs := chainExamples(t, dir)
	out := filepath.Join(dir, "out", "chains.arrow")
	var hits atomic.Int32
	// The teacher fails from the second batch on: the first batch's part
	// survives, the output file does not appear.
	broken := fakeChatServer(t, exs, teacherScript(exs), func(i int) bool { return i >= 3 }, &hits)
	_, err := GenerateChains(context.Background(), chainsConfig(examples, out, testTeacher(t, broken.URL, nil)))
	broken.Close()
	if err == nil || !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), broken.URL) {
		t.Fatalf("error %v, want the teacher's HTTP 400 naming the endpoint", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a failed run left %s (%v)", out, err)
	}
	parts, _ := filepath.Glob(out + ".parts/*")
	parts = slices.DeleteFunc(parts, func(p string) bool {
		return strings.HasPrefix(filepath.Base(p), ".tagpr-") || filepath.Base(p) == train.SettingsFile // the lock files and the settings stay
	})
	if len(parts) != 1 {
		t.Fatalf("after the failure the parts dir holds %q, want one part file and no temp files", parts)
	}

	hits.Store(0)
	srv := fakeChatServer(t, exs, teacherScript(exs), nil, &hits)
	defer srv.Close()
	teacher := testTeacher(t, srv.URL, nil)
	st, err := GenerateChains(context.Background(), chainsConfig(examples, out, teacher))
	if err != nil {
		t.Fatal(err)
	}
	if st != (ChainsStats{Skipped: 3, Done: 5, Rows: 8, Kept: 2, Merged: true}) || hits.Load() != 5 {
		t.Fatalf("resume: stats %+v after %d requests, want 5 new examples", st, hits.Load())
	}
	// Part 0 was written by the broken endpoint's teacher name; the rows
	// are otherwise exactly those of an uninterrupted run.
	rows, err := datasets.ReadChains(out, datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		rows[i].Teacher = strings.Replace(rows[i].Teacher, broken.URL, srv.URL, 1)
	}
	fixed := filepath.Join(dir, "fixed.arrow")
	if err := datasets.WriteRows(fixed, rows, datasets.CreateChains); err != nil {
		t.Fatal(err)
	}
	checkChainRows(t, fixed, exs, teacher.Name())
}

// Shard workers share one output's parts folder; each writes only its
// shard's rows, the merge waits for all of them, and the merged file — with
// duplicates decided across shards — is the unsharded run's, byte for byte.
func TestGenerateChainsShards(t *testing.T) {
	dir := t.TempDir()
	examples, exs := chainExamples(t, dir)
	var hits atomic.Int32
	srv := fakeChatServer(t, exs, teacherScript(exs), nil, &hits)
	defer srv.Close()
	single := filepath.Join(dir, "single", "chains.arrow")
	if _, err := GenerateChains(context.Background(), chainsConfig(examples, single, testTeacher(t, srv.URL, nil))); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "sharded", "chains.arrow")
	var ids []string
	for i := range 2 {
		cfg := chainsConfig(examples, out, testTeacher(t, srv.URL, nil))
		cfg.Shard = datasets.Shard{Index: i, Count: 2}
		st, err := GenerateChains(context.Background(), cfg)
		if err != nil || st.Merged {
			t.Fatalf("shard %d: %+v, %v", i, st, err)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatal("a shard's worker wrote the merged output")
		}
		if i == 0 {
			if _, err := MergeChains(examples, out, false); err == nil || !strings.Contains(err.Error(), "have no output") {
				t.Fatalf("merge with a shard missing: %v", err)
			}
		}
		parts, _ := filepath.Glob(filepath.Join(out+".parts", fmt.Sprintf("part-%dof2-*.arrow", i)))
		for _, p := range parts {
			rows, err := datasets.ReadChains(p, datasets.ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if !cfg.Shard.Contains(r.ID) {
					t.Errorf("shard %d holds %s", i, r.ID)
				}
				ids = append(ids, r.ID)
			}
		}
	}
	var want []string
	for _, e := range exs {
		want = append(want, e.ID)
	}
	sort.Strings(ids)
	sort.Strings(want)
	if !reflect.DeepEqual(ids, want) {
		t.Fatalf("shards hold %q, want each example once: %q", ids, want)
	}
	st, err := MergeChains(examples, out, false)
	if err != nil || st != (ChainsStats{Rows: 8, Kept: 2, Merged: true}) {
		t.Fatalf("merge: %+v, %v", st, err)
	}
	a, _ := os.ReadFile(single)
	b, _ := os.ReadFile(out)
	if len(a) == 0 || string(a) != string(b) {
		t.Fatalf("merged shards (%d bytes) differ from the unsharded run (%d bytes)", len(b), len(a))
	}
}

func TestGenerateChainsBadInput(t *testing.T) {
	dir := t.TempDir()
	examples, _ := chainExamples(t, dir)
	chainsFile := filepath.Join(dir, "some_chains.arrow")
	if err := datasets.WriteRows(chainsFile, []datasets.Chain{{ID: "x", Chain: "c", Teacher: "t"}}, datasets.CreateChains); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.arrow")
	os.WriteFile(garbage, []byte("ARROW1 but not really"), 0o644)
	teacher := &scriptedTeacher{reply: func([]datasets.Message) string { return "x" }}
	for _, c := range []struct {
		cfg  ChainsConfig
		want string
	}{
		{chainsConfig(chainsFile, filepath.Join(dir, "o1.arrow"), teacher), "holds tagged_chain rows"},
		{chainsConfig(garbage, filepath.Join(dir, "o2.arrow"), teacher), garbage},
		{chainsConfig(filepath.Join(dir, "missing.arrow"), filepath.Join(dir, "o3.arrow"), teacher), "missing.arrow"},
		{chainsConfig(examples, filepath.Join(dir, "o4.arrow"), nil), "no teacher"},
	} {
		_, err := GenerateChains(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.cfg.Examples, err, c.want)
		}
		if _, err := os.Stat(c.cfg.Out); !os.IsNotExist(err) {
			t.Errorf("%s: output written despite the error", c.cfg.Examples)
		}
	}
	// A broken part file from elsewhere is an error naming it, not a silent restart.
	out := filepath.Join(dir, "o5.arrow")
	os.MkdirAll(out+".parts", 0o755)
	os.WriteFile(filepath.Join(out+".parts", "part-000000.arrow"), []byte("junk"), 0o644)
	if _, err := GenerateChains(context.Background(), chainsConfig(examples, out, teacher)); err == nil || !strings.Contains(err.Error(), "part-000000.arrow") {
		t.Errorf("broken part file: error %v", err)
	}
	// A teacher that answers too few completions is caught.
	short := shortTeacher{}
	if _, err := GenerateChains(context.Background(), chainsConfig(examples, filepath.Join(dir, "o6.arrow"), short)); err == nil || !strings.Contains(err.Error(), "returned 0 completions for 3 prompts") {
		t.Errorf("short teacher: error %v", err)
	}
}

type shortTeacher struct{}

func (shortTeacher) Name() string { return "short" }
func (shortTeacher) Complete(context.Context, [][]datasets.Message) ([]Completion, error) {
	return nil, nil
}

// TestGenerateChainsTeacherLabellerAndGenerationThreshold: a generation task
// (ROUGE-L against the default 0.5 threshold) with steps labelled by the
// teacher itself.
func TestGenerateChainsTeacherLabellerAndGenerationThreshold(t *testing.T) {
	dir := t.TempDir()
	d, err := datasets.Synth(datasets.SynthConfig{Seed: 3, Users: 4, QueriesPerUser: 3, ProfileMin: 3, ProfileMax: 3,
		Tasks: []string{datasets.SynthGen}, DevFrac: 0.25, TestFrac: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	set := d.Set(datasets.SynthGen, "train")
	exs := set.Examples[:3]
	examples := filepath.Join(dir, "gen.arrow")
	if err := datasets.WriteRows(examples, exs, func(p string) (*datasets.Writer[datasets.Example], error) {
		return datasets.CreateExamples(p, set.Task)
	}); err != nil {
		t.Fatal(err)
	}
	words := strings.Fields(exs[1].Output)
	answers := []string{
		exs[0].Output,              // exact: r_task 1
		words[0],                   // one word of several: ROUGE-L F1 < 0.5
		exs[2].Output + " indeed!", // close: ROUGE-L F1 ≥ 0.5
	}
	teacher := &scriptedTeacher{reply: func(p []datasets.Message) string {
		c := p[len(p)-1].Content
		if strings.HasPrefix(c, "Label each") {
			if strings.Contains(c, "3. ") {
				return "1: recall_history\n2: infer_preference\n3: conclude"
			}
			return "1: recall_history" // one tag for two steps: unusable
		}
		for i, e := range exs {
			if strings.Contains(c, e.Input) {
				if i == 2 {
					return "Past titles are short.\n\nThe user likes questions.\n\nAnswer: " + answers[i] // two steps
				}
				return "Past titles are short.\n\nThe user likes questions.\n\nA candidate title.\n\nAnswer: " + answers[i]
			}
		}
		t.Errorf("prompt matches no example:\n%s", c)
		return ""
	}}
	out := filepath.Join(dir, "chains.arrow")
	cfg := ChainsConfig{Examples: examples, Out: out, Teacher: teacher, Batch: 8,
		Labeller: TeacherLabeller{Teacher: teacher, Taxonomy: rewardmodel.DefaultTaxonomy()}}
	if _, err := GenerateChains(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	rows, err := datasets.ReadChains(out, datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	wantAnswer := []bool{true, false, true}
	for i, r := range rows {
		v := r.Verdicts[0]
		if v.Pass != wantAnswer[i] || !strings.Contains(v.Detail, "need 0.500") {
			t.Errorf("row %d (answer %q, gold %q): %+v", i, r.Answer, r.Gold, v)
		}
		if !strings.HasSuffix(r.Teacher, "; labeller=teacher:scripted") {
			t.Errorf("row %d: teacher %q", i, r.Teacher)
		}
	}
	if !rows[0].Keep || rows[1].Keep || rows[2].Keep {
		t.Errorf("keep %v %v %v, want true false false", rows[0].Keep, rows[1].Keep, rows[2].Keep)
	}
	if tags := rows[0].Spans; len(tags) != 3 || tags[0].Tag != "recall_history" || tags[2].Tag != "conclude" {
		t.Errorf("row 0 spans %+v", tags)
	}
	if v := rows[2].Verdicts[1]; v.Pass || !strings.Contains(v.Detail, "step 2 of 2 has no tag") {
		t.Errorf("row 2 tags verdict %+v", v)
	}
}

// cancellingTeacher answers its first batch, then the run is interrupted.
type cancellingTeacher struct {
	scriptedTeacher
	cancel context.CancelFunc
}

func (c *cancellingTeacher) Complete(ctx context.Context, prompts [][]datasets.Message) ([]Completion, error) {
	if c.calls == 1 {
		c.cancel()
		return nil, ctx.Err()
	}
	return c.scriptedTeacher.Complete(ctx, prompts)
}

func TestGenerateChainsInterrupted(t *testing.T) {
	dir := t.TempDir()
	examples, exs := chainExamples(t, dir)
	script := teacherScript(exs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	teacher := &cancellingTeacher{cancel: cancel, scriptedTeacher: scriptedTeacher{reply: func(p []datasets.Message) string {
		for i, e := range exs {
			if strings.Contains(p[0].Content, e.Input) {
				return script[i]
			}
		}
		return ""
	}}}
	out := filepath.Join(dir, "chains.arrow")
	_, err := GenerateChains(ctx, chainsConfig(examples, out, teacher))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("an interrupted run wrote its output file")
	}
	st, err := GenerateChains(context.Background(), chainsConfig(examples, out, &scriptedTeacher{reply: teacher.reply}))
	if err != nil || st.Skipped != 3 || st.Done != 5 {
		t.Fatalf("resume after interrupt: %+v, %v", st, err)
	}
	checkChainRows(t, out, exs, "scripted")
}

// Plain gold chains keep the reasoning and the answer without a step tag,
// and are kept as the tagged ones are (the no-tags ablation trains on them).
func TestGoldChainsPlain(t *testing.T) {
	cfg := datasets.DefaultSynthConfig()
	cfg.Users = 20
	d, err := datasets.Synth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tx := rewardmodel.DefaultTaxonomy()
	set := d.Set(datasets.SynthRate, "train")
	tagged := goldChainRows(set.Task, set.Examples, ChainsConfig{Taxonomy: tx, Filter: ChainFilter{KeepDuplicates: true}}, false)
	plain := goldChainRows(set.Task, set.Examples, ChainsConfig{Taxonomy: tx, Filter: ChainFilter{KeepDuplicates: true}}, true)
	for i, row := range plain {
		check := rewardmodel.CheckTags(row.Chain, tx)
		if !row.Keep || len(check.Spans) != 0 || !check.OneAnswer || row.Answer != set.Examples[i].Output {
			t.Fatalf("%s: keep %v, %d step tags, answer %q (gold %q):\n%s", row.ID, row.Keep, len(check.Spans), row.Answer, set.Examples[i].Output, row.Chain)
		}
		if !strings.Contains(row.Chain, tagged[i].Spans[0].Text) {
			t.Fatalf("%s: the plain chain lost the step text %q:\n%s", row.ID, tagged[i].Spans[0].Text, row.Chain)
		}
	}
}

// min_reward is the classification and rating threshold, generation_min_reward
// the generation one: setting min_reward (to keep ratings one off, or to 1)
// left generation chains needing that ROUGE-L instead.
func TestChainFilterThresholdPerKind(t *testing.T) {
	f := ChainFilter{MinReward: 0.75}.withDefaults()
	for kind, want := range map[rewardmodel.TaskKind]float64{rewardmodel.Classification: 0.75, rewardmodel.Rating: 0.75, rewardmodel.Generation: 0.5} {
		if got := f.threshold(kind); got != want {
			t.Errorf("min_reward 0.75, generation_min_reward default: %s threshold %v, want %v", kind, got, want)
		}
	}
	if got := (ChainFilter{}).withDefaults().threshold(rewardmodel.Rating); got != 1 {
		t.Errorf("default rating threshold %v, want 1", got)
	}
}

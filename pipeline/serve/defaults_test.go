package serve

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/tokenize"
)

// generation_config.json's do_sample/temperature/top_p/top_k become the
// defaults of what a request leaves out, each key on its own; do_sample
// false is greedy; keys tagpr does not implement are named; bad values are
// refused naming the file and key.
func TestSamplingDefaults(t *testing.T) {
	openAI := lm.Sampling{Temperature: 1}
	for _, c := range []struct {
		file    string
		want    lm.Sampling
		says    string
		ignored string
		err     string
	}{
		{``, openAI, "temperature 1, top_p off, top_k off (tagpr's default)", "", ""},
		{`{"eos_token_id": 2}`, openAI, "temperature 1, top_p off, top_k off (tagpr's default)", "", ""},
		// Qwen3's.
		{`{"do_sample": true, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "eos_token_id": [151645, 151643]}`,
			lm.Sampling{Temperature: 0.6, TopP: 0.95, TopK: 20}, "temperature 0.6, top_p 0.95, top_k 20 from ", "", ""},
		// Qwen2.5-Instruct's, with its repetition_penalty.
		{`{"do_sample": true, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05, "min_p": 0, "suppress_tokens": []}`,
			lm.Sampling{Temperature: 0.7, TopP: 0.8, TopK: 20, RepetitionPenalty: 1.05}, "top_k 20, repetition_penalty 1.05 from ", "", ""},
		// A key tagpr does not implement is named.
		{`{"do_sample": true, "temperature": 0.7, "min_p": 0.05}`,
			lm.Sampling{Temperature: 0.7}, "temperature 0.7 from ", "min_p=0.05", ""},
		// transformers applies repetition_penalty when greedy too.
		{`{"do_sample": false, "repetition_penalty": 1.1}`,
			lm.Sampling{RepetitionPenalty: 1.1}, "greedy, repetition_penalty 1.1 (do_sample false in ", "", ""},
		// Llama-3-Instruct's: no top_k, which stays off.
		{`{"do_sample": true, "temperature": 0.6, "top_p": 0.9}`,
			lm.Sampling{Temperature: 0.6, TopP: 0.9}, "temperature 0.6, top_p 0.9 from ", "", ""},
		{`{"do_sample": false, "temperature": 0.7, "top_k": 20, "repetition_penalty": 1.0, "num_beams": 1}`,
			lm.Sampling{}, "greedy (do_sample false in ", "", ""},
		{`{"temperature": -1}`, openAI, "", "", "temperature is -1"},
		{`{"top_p": 1.5}`, openAI, "", "", "top_p is 1.5"},
		{`{"top_k": -3}`, openAI, "", "", "top_k is -3"},
		{`{"repetition_penalty": 0}`, openAI, "", "", "repetition_penalty is 0"},
	} {
		var gc *lm.GenerationConfig
		path := filepath.Join(t.TempDir(), "generation_config.json")
		if c.file != "" {
			if err := os.WriteFile(path, []byte(c.file), 0o644); err != nil {
				t.Fatal(err)
			}
			var err error
			if gc, err = lm.ReadGenerationConfig(path); err != nil {
				t.Fatal(err)
			}
		}
		d, err := ReadSamplingDefaults(gc, openAI)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s: error %v, want one naming %s and %q", c.file, err, path, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if d.Sampling != c.want {
			t.Errorf("%s: defaults %+v, want %+v", c.file, d.Sampling, c.want)
		}
		if !strings.Contains(d.String(), c.says) {
			t.Errorf("%s: says %q, want %q in it", c.file, d.String(), c.says)
		}
		if w := d.IgnoredWarning(); c.ignored == "" && w != "" || !strings.Contains(w, c.ignored) || strings.Contains(w, "min_p=0,") {
			t.Errorf("%s: warning %q, want %q", c.file, w, c.ignored)
		}
	}
}

// modelWithGenerationConfig opens randomDir's model (its weights written
// anew into a temp folder) with gen as its generation_config.json; the
// model closes with the test.
func modelWithGenerationConfig(t *testing.T, gen string) (*Model, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "random")
	if _, err := lm.WriteModelDir(testConfig(fixTok), dir, false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(gen), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir, OpenOptions{Tokenizer: fixTok, Name: "random", Session: ort.Options{IntraOpThreads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, dir
}

// A request that leaves temperature/top_p/top_k out samples with the
// model's generation_config.json's (here top_k 1: the greedy answer,
// whatever the seed); a request's own values win.
func TestServeTakesGenerationConfigDefaults(t *testing.T) {
	m, dir := modelWithGenerationConfig(t, `{"bos_token_id": 151643, "eos_token_id": 151643, "do_sample": true, "temperature": 0.6, "top_k": 1}`)
	ts := startServer(t, m, Options{})
	if got := ts.SamplingDefaults().String(); !strings.Contains(got, "temperature 0.6, top_k 1 from "+filepath.Join(dir, "generation_config.json")) {
		t.Errorf("defaults say %q", got)
	}
	want := greedyChat(t, m, "Name a colour.", 12, nil).Text
	chat := ts.base + "/v1/chat/completions"
	for seed := range 3 {
		body := chatBody(m, "Name a colour.", map[string]any{"max_tokens": 12, "seed": seed})
		delete(body, "temperature")
		if code, res := post(t, chat, body); code != 200 || str(field(res, "choices", 0, "message", "content")) != want {
			t.Errorf("seed %d without temperature/top_k: %d %q, want the greedy %q (generation_config.json's top_k 1)", seed, code, str(field(res, "choices", 0, "message", "content")), want)
		}
	}
	differ := false
	for seed := range 3 {
		body := chatBody(m, "Name a colour.", map[string]any{"max_tokens": 12, "seed": seed, "top_k": -1})
		delete(body, "temperature")
		if code, res := post(t, chat, body); code != 200 {
			t.Fatalf("top_k -1: %d %v", code, res)
		} else if str(field(res, "choices", 0, "message", "content")) != want {
			differ = true
		}
	}
	if !differ {
		t.Error("a request's top_k -1 (off) did not win over generation_config.json's top_k 1: three seeds gave the greedy answer")
	}
}

// The penalties: generation_config.json's repetition_penalty is the
// default of requests that leave it out (greedy here, as do_sample false
// leaves it on in transformers); a request's repetition_penalty,
// frequency_penalty and presence_penalty give what Generate gives with
// them, and change the answer. (The random model does not repeat itself,
// so the values here favour repeats: a penalty below 1, negative ones.)
func TestServePenalties(t *testing.T) {
	m, _ := modelWithGenerationConfig(t, `{"bos_token_id": 151643, "eos_token_id": 151643, "do_sample": false, "repetition_penalty": 0.5}`)
	ts := startServer(t, m, Options{})
	if got := ts.SamplingDefaults().String(); !strings.Contains(got, "greedy, repetition_penalty 0.5 (do_sample false in ") {
		t.Errorf("defaults say %q", got)
	}
	const user, n = "Name a colour.", 24
	ids, _, err := m.EncodeChat([]tokenize.Message{{Role: "user", Content: user}})
	if err != nil {
		t.Fatal(err)
	}
	generate := func(s lm.Sampling) string {
		c, _, err := m.Generate(context.Background(), [][]int64{ids}, lm.GenerateOptions{MaxNewTokens: n, Sampling: s, NoLogProbs: true})
		if err != nil {
			t.Fatal(err)
		}
		return c[0].Text
	}
	plain := generate(lm.Sampling{})
	chat := ts.base + "/v1/chat/completions"
	for _, c := range []struct {
		extra map[string]any
		want  lm.Sampling
	}{
		{map[string]any{}, lm.Sampling{RepetitionPenalty: 0.5}},
		{map[string]any{"repetition_penalty": 1}, lm.Sampling{}},
		{map[string]any{"repetition_penalty": 1, "frequency_penalty": -2}, lm.Sampling{FrequencyPenalty: -2}},
		{map[string]any{"repetition_penalty": 1, "presence_penalty": -2}, lm.Sampling{PresencePenalty: -2}},
	} {
		want := generate(c.want)
		if c.want != (lm.Sampling{}) && want == plain {
			t.Errorf("%+v: Generate's answer is the unpenalized one %q", c.want, plain)
		}
		c.extra["max_tokens"] = n
		code, res := post(t, chat, chatBody(m, user, c.extra))
		if got := str(field(res, "choices", 0, "message", "content")); code != 200 || got != want {
			t.Errorf("%v: %d %q, want Generate's %q", c.extra, code, got, want)
		}
	}
}

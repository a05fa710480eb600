package pipeline

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
)

// shapedServer is an OpenAI-compatible endpoint on loopback answering
// example i's prompt with the choice shape(i, example) builds, as real
// servers shape them (reasoning fields, finish reasons, refusals).
func shapedServer(t *testing.T, exs []datasets.Example, shape func(int, *datasets.Example) map[string]any) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := readChat(t, r)
		user := req.Messages[len(req.Messages)-1].Content
		for i := range exs {
			if strings.Contains(user, exs[i].Input) {
				choice := shape(i, &exs[i])
				choice["index"] = 0
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{"id": "chatcmpl-test", "object": "chat.completion", "model": "fake",
					"choices": []map[string]any{choice}})
				return
			}
		}
		http.Error(w, "unknown prompt", http.StatusBadRequest)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// freeReasoning is goodFree without its answer line.
func freeReasoning(tag string) string {
	s := goodFree(tag)
	return s[:strings.LastIndex(s, "Answer:")]
}

// shapedChains runs the chains stage against shapedServer and returns its rows.
func shapedChains(t *testing.T, shape func(int, *datasets.Example) map[string]any) ([]datasets.Example, []datasets.Chain) {
	t.Helper()
	dir := t.TempDir()
	examples, exs := chainExamples(t, dir)
	srv := shapedServer(t, exs, shape)
	out := filepath.Join(dir, "chains.arrow")
	cfg := chainsConfig(examples, out, testTeacher(t, srv.URL, nil))
	cfg.Filter.KeepDuplicates = true // the examples of one user share a gold answer, and so the chain
	if _, err := GenerateChains(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	rows, err := datasets.ReadChains(out, datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return exs, rows
}

// Reasoning models write free-form reasoning inside <think> (DeepSeek-R1
// style in the content, or split off by a vLLM/SGLang reasoning parser and
// put back in front), with the answer after </think>: those chains are
// free-form, labelled, and kept when right.
func TestGenerateChainsLabelsFreeFormThinkChains(t *testing.T) {
	exs, rows := shapedChains(t, func(i int, e *datasets.Example) map[string]any {
		msg := map[string]any{"role": "assistant"}
		switch i % 3 {
		case 0: // R1 in the content, "Answer:" line after </think>
			msg["content"] = "<think>\n" + freeReasoning(e.Output) + "</think>\n\nAnswer: " + e.Output
		case 1: // R1 in the content, the bare answer after </think>
			msg["content"] = "<think>\n" + freeReasoning(e.Output) + "</think>\n\n" + e.Output
		case 2: // a reasoning parser: the reasoning apart, the content only the answer
			msg["reasoning_content"] = freeReasoning(e.Output)
			msg["content"] = "\n\n" + e.Output
		}
		return map[string]any{"message": msg, "finish_reason": "stop"}
	})
	for i, r := range rows {
		if !r.Keep || r.Answer != exs[i].Output || len(r.Spans) != 5 || !strings.HasSuffix(r.Teacher, "; labeller=rule") {
			t.Errorf("row %d: keep %v answer %q (gold %q), %d spans, teacher %q, verdicts %+v\n%s", i, r.Keep, r.Answer, exs[i].Output,
				len(r.Spans), r.Teacher, r.Verdicts, r.Chain)
		}
	}
}

// vLLM (since 0.10), Ollama and OpenRouter name the split-off reasoning
// "reasoning", older vLLM and SGLang "reasoning_content": either is the chain.
func TestOpenAITeacherReadsReasoningFields(t *testing.T) {
	exs, rows := shapedChains(t, func(i int, e *datasets.Example) map[string]any {
		field := []string{"reasoning", "reasoning_content"}[i%2]
		think := e.Chain[strings.Index(e.Chain, "<think>")+len("<think>") : strings.Index(e.Chain, "</think>")]
		return map[string]any{"finish_reason": "stop", "message": map[string]any{"role": "assistant", field: think,
			"content": e.Chain[strings.Index(e.Chain, "</think>")+len("</think>"):]}}
	})
	for i, r := range rows {
		if !r.Keep || r.Answer != exs[i].Output || !strings.HasSuffix(r.Teacher, "; labeller=given") {
			t.Errorf("row %d: keep %v answer %q (gold %q), teacher %q, verdicts %+v\n%s", i, r.Keep, r.Answer, exs[i].Output, r.Teacher, r.Verdicts, r.Chain)
		}
	}
}

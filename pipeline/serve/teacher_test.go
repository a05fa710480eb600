package serve

import (
	"context"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/pipeline"
	"github.com/tagpr/tagpr/tokenize"
)

// The chains stage's OpenAI teacher talks to tagpr serve: each prompt's
// completion is the model's greedy answer to it (the teacher asks for
// temperature 0), with the <think> part in the text the chains stage
// parses, whether the server splits reasoning out or not.
func TestChainsTeacherAgainstServe(t *testing.T) {
	for _, c := range []struct {
		dir   string
		split bool
	}{{randomDir, false}, {scriptedDir, false}, {scriptedDir, true}} {
		dir := c.dir
		m := openModel(t, dir)
		ts := startServer(t, m, Options{Reasoning: c.split})
		teacher, err := pipeline.NewOpenAITeacher(pipeline.OpenAIConfig{BaseURL: ts.base + "/v1", Model: m.Name, MaxTokens: 16, Concurrency: 3})
		if err != nil {
			t.Fatal(err)
		}
		prompts := [][]datasets.Message{
			{{Role: "system", Content: "You label movies."}, {Role: "user", Content: "A heist in space."}},
			{{Role: "user", Content: "Rate this product."}},
			{{Role: "user", Content: "Write a title."}},
			{{Role: "user", Content: "One more."}},
		}
		got, err := teacher.Complete(context.Background(), prompts)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		for i, p := range prompts {
			msgs := make([]tokenize.Message, len(p))
			for k, x := range p {
				msgs[k] = tokenize.Message{Role: x.Role, Content: x.Content}
			}
			ids, _, err := m.EncodeChat(msgs)
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := m.Generate(context.Background(), [][]int64{ids}, generateGreedy(16))
			if err != nil {
				t.Fatal(err)
			}
			if c.split {
				want[0].Text = "<think>\nLet me think\n</think>\n\nHello there."
			}
			if got[i].Text != want[0].Text {
				t.Errorf("%s prompt %d: teacher got %q, greedy %q", m.Name, i, got[i], want[0].Text)
			}
		}
		if dir == scriptedDir && !c.split && got[0].Text != scriptText {
			t.Errorf("scripted teacher answer %q, want %q", got[0], scriptText)
		}
	}
}

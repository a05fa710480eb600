package pipeline

import (
	"encoding/json"
	"strings"
	"testing"
)

// An RL log whose lines carry reward_terms (each weighted addend's mean,
// std, share of the total and of the learning signal) gets the terms'
// charts and rows; one without them gets neither.
func TestReportHTMLRewardTerms(t *testing.T) {
	log := `{"stage":"guided","step":1,"reward":{"mean":0.5,"std":0.2},"rewards":{"r_task":{"mean":0.4,"std":0.3},"r_tag":{"mean":0.3,"std":0.1}},"reward_terms":{"task":{"mean":0.4,"std":0.3,"share":0.8,"signal":0.9},"tag":{"mean":0.1,"std":0.03,"share":0.2,"signal":0.1}},"clip_fraction":0,"frac_reward_zero_std":0.25,"completion_length":{"mean":90,"min":50,"max":120},"kl":0.01}
{"stage":"guided","step":2,"reward":{"mean":0.6,"std":0.2},"rewards":{"r_task":{"mean":0.5,"std":0.3},"r_tag":{"mean":0.3,"std":0.1}},"reward_terms":{"task":{"mean":0.5,"std":0.3,"share":0.83,"signal":0.95},"tag":{"mean":0.1,"std":0.03,"share":0.17,"signal":0.05}},"clip_fraction":0.1,"frac_reward_zero_std":0,"completion_length":{"mean":80,"min":40,"max":110},"kl":0.02}
{"stage":"guided","step":3,"reward":{"mean":0.7,"std":0.1},"rewards":{"r_task":{"mean":0.6,"std":0.2},"r_tag":{"mean":0.3,"std":0.1}},"reward_terms":{"task":{"mean":0.6,"std":0.2,"share":0.86,"signal":1},"tag":{"mean":0.1,"std":0.03,"share":0.14,"signal":0}},"clip_fraction":0,"frac_reward_zero_std":0,"completion_length":{"mean":70,"min":30,"max":100}}`
	var lines []rlLogLine
	for _, l := range strings.Split(log, "\n") {
		var x rlLogLine
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, x)
	}
	r := &Report{Title: "terms", Curves: &Curves{RL: []RLCurve{{Stage: "guided", Source: "rl/guided/checkpoints/rl_log.jsonl", Steps: lines}}}}
	page, err := r.HTML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="chart-rl-guided-terms"`, `id="chart-rl-guided-shares"`, `id="chart-rl-guided-signal"`,
		`data-key="reward_terms.task.share" data-n="3"`, `data-key="reward_terms.tag.signal" data-n="3"`, `data-key="reward.std" data-n="3"`,
		`data-key="kl" data-n="2"`, `<td class="l">term task</td><td>0.400 ± 0.300 · 80%</td>`, `<td><b>0.700</b> ± 0.100</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	for i := range lines {
		lines[i].Terms = nil
	}
	page, _ = r.HTML()
	if strings.Contains(page, "chart-rl-guided-terms") || !strings.Contains(page, "has no reward terms") {
		t.Error("a log without reward terms: want no terms chart and a note saying why")
	}
}

func TestHighlightChain(t *testing.T) {
	got := highlightChain("<think>\n<recall_history>a < b & c</recall_history>\n</think>\n<answer>x</answer>")
	for _, want := range []string{`&lt;recall_history&gt;</span>`, `a &lt; b &amp; c</span>`, `<span class="ans">x</span>`} {
		if !strings.Contains(got, want) {
			t.Errorf("highlighted chain lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "<recall_history>") || strings.Contains(got, "<think>") {
		t.Errorf("a tag reached the page unescaped:\n%s", got)
	}
}

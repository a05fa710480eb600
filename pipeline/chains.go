package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/rewardmodel"
	"github.com/tagpr/tagpr/tokenize"
)

// ChainFilter bounds what a kept chain may look like.
type ChainFilter struct {
	// MinReward is the task reward an answer needs to count as correct:
	// default 1 (exact) for classification and rating, GenerationMinReward
	// for generation tasks.
	MinReward           float64 `mapstructure:"min_reward"`
	GenerationMinReward float64 `mapstructure:"generation_min_reward"` // default 0.5 (ROUGE-L F1)
	MinSteps            int     `mapstructure:"min_steps"`             // tagged steps (default 2)
	MaxSteps            int     `mapstructure:"max_steps"`             // (default 16)
	MaxChars            int     `mapstructure:"max_chars"`             // whole chain in bytes (default 6000)
	// KeepDuplicates keeps chains whose text an earlier kept chain has
	// (different examples may share one right reasoning, as the synthetic
	// benchmark's gold chains do); their verdict still names the first.
	KeepDuplicates bool `mapstructure:"keep_duplicates"`
}

func (f ChainFilter) withDefaults() ChainFilter {
	if f.GenerationMinReward <= 0 {
		f.GenerationMinReward = 0.5
	}
	if f.MinSteps <= 0 {
		f.MinSteps = 2
	}
	if f.MaxSteps <= 0 {
		f.MaxSteps = 16
	}
	if f.MaxChars <= 0 {
		f.MaxChars = 6000
	}
	return f
}

// threshold is the task reward a chain's answer needs: min_reward for
// classification and rating, generation_min_reward for generation (a set
// min_reward raised or lowered the generation threshold too: min_reward 1
// kept only titles with ROUGE-L 1).
func (f ChainFilter) threshold(kind rewardmodel.TaskKind) float64 {
	if kind == rewardmodel.Generation {
		return f.GenerationMinReward
	}
	if f.MinReward > 0 {
		return f.MinReward
	}
	return 1
}

// ChainsConfig is one run of the chains stage.
type ChainsConfig struct {
	Examples string // lamp_example file (Arrow IPC or Parquet)
	Out      string // tagged_chain file written at the end; work in progress lives in Out + ".parts"
	Teacher  Teacher
	// Labeller tags free-form chains (default: RuleLabeller over Taxonomy).
	Labeller Labeller
	Taxonomy rewardmodel.Taxonomy // default rewardmodel.DefaultTaxonomy()
	Prompt   PromptOptions
	// System, when set, is sent as a system message before each prompt
	// (e.g. to ask a general-purpose teacher for free-form steps).
	System  string
	Samples int // teacher samples per example (default 1)
	Batch   int // examples per teacher batch and per part file (default 32)
	Shard   datasets.Shard
	Filter  ChainFilter
	// Progress hears of every batch (Task "chains", Step the examples done
	// including earlier runs', Metrics rows).
	Progress train.ProgressFunc
	// Settings are the teacher's knobs its Name does not show (sampling,
	// token budget), recorded with the part files beside the rest of this
	// config: a resumed run or another shard's worker with other settings
	// is refused before it mixes its chains with theirs.
	Settings map[string]any
}

// ChainsStats counts one run.
type ChainsStats struct {
	Skipped int // examples of this shard already in part files (an earlier run, or another worker)
	Done    int // examples sent to the teacher in this run
	Rows    int // rows in Out (all runs); for a shard's worker, the rows it wrote now
	Kept    int // rows in Out with keep=true (0 for a shard's worker: duplicates are decided at merge)
	Merged  bool
}

// Verdict names, in the order every row carries them.
const (
	VerdictAnswer    = "answer_correct"
	VerdictTags      = "tags_valid"
	VerdictLength    = "length"
	VerdictDuplicate = "not_duplicate"
)

// GenerateChains streams the examples of one shard in batches, asks the
// teacher for chains, labels free-form ones, filters them and writes every
// row, kept or rejected. Each batch lands atomically as a part file in
// Out.parts (datasets.Parts), so a killed run resumes where it stopped
// (examples with rows in any part file are skipped; an unfinished batch's
// replies that came back wait in a pending file, not asked for again). Without a shard, the
// parts are then merged into Out (MergeChains); a shard's worker leaves its
// parts for MergeChains to assemble once every shard is done.
func GenerateChains(ctx context.Context, cfg ChainsConfig) (ChainsStats, error) {
	var st ChainsStats
	if cfg.Teacher == nil {
		return st, errors.New("chains: no teacher")
	}
	if cfg.Examples == "" || cfg.Out == "" {
		return st, errors.New("chains: examples and out files are required")
	}
	if cfg.Taxonomy == nil {
		cfg.Taxonomy = rewardmodel.DefaultTaxonomy()
	}
	if err := cfg.Taxonomy.Validate(); err != nil {
		return st, fmt.Errorf("chains: %w", err)
	}
	if err := cfg.Prompt.Validate(); err != nil {
		return st, fmt.Errorf("chains: %w", err)
	}
	if cfg.Labeller == nil {
		cfg.Labeller = RuleLabeller{Taxonomy: cfg.Taxonomy}
	}
	if cfg.Samples <= 0 {
		cfg.Samples = 1
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 32
	}
	cfg.Filter = cfg.Filter.withDefaults()
	labeller := cfg.Labeller.Name()
	if l, ok := cfg.Labeller.(TeacherLabeller); ok {
		labeller = "teacher:" + teacherID(l.Teacher)
	}
	settings := map[string]any{"teacher": teacherID(cfg.Teacher), "labeller": labeller, "system": cfg.System,
		"samples": cfg.Samples, "filter": cfg.Filter, "prompt": cfg.Prompt, "taxonomy": cfg.Taxonomy}
	for k, v := range cfg.Settings {
		settings["teacher."+k] = v
	}
	parts := datasets.PartsFor(cfg.Out, datasets.Shard{}).Dir
	if err := checkStamp(parts, "chains "+cfg.Out, settings, false); err != nil {
		return st, err
	}

	fo := FanOut[datasets.Example, datasets.Chain]{Name: "chains", In: cfg.Examples, Out: cfg.Out, Kind: datasets.KindExample,
		Shard: cfg.Shard, Batch: cfg.Batch, Decode: datasets.DecodeExamples, ID: func(e *datasets.Example) string { return e.ID },
		Create: datasets.CreateChains, Progress: cfg.Progress,
		Work: func(ctx context.Context, task *datasets.Task, exs []datasets.Example) ([]datasets.Chain, error) {
			g := &chainGen{cfg: cfg, task: task, kind: RewardKind(task)}
			return g.batch(ctx, exs)
		}}
	fs, err := fo.Run(ctx)
	st.Skipped, st.Done, st.Rows = fs.Skipped, fs.Done, fs.Rows
	if err != nil {
		return st, err
	}
	if cfg.Shard.Count > 1 {
		return st, nil
	}
	ms, err := MergeChains(cfg.Examples, cfg.Out, cfg.Filter.KeepDuplicates)
	ms.Skipped, ms.Done = st.Skipped, st.Done
	return ms, err
}

// teacherID is the teacher a resumed run must keep: its name, but for an
// OpenAI-compatible endpoint only its model (the same model served at
// another address, a restarted server's new port or a fallback gateway,
// goes on where the parts stopped).
func teacherID(t Teacher) string {
	if ot, ok := t.(*OpenAITeacher); ok {
		return "openai:" + ot.cfg.Model
	}
	return t.Name()
}

// MergeChains assembles the part files of every worker in Out.parts into
// Out, in the examples' order, and decides duplicates there, against the
// chains kept before in that order: so Out is the same bytes however the
// work was split into shards, restarted or resumed. Every example must have
// rows (a worker that has not finished is an error naming the gap).
// keepDuplicates keeps duplicate chains (ChainFilter.KeepDuplicates).
func MergeChains(examples, out string, keepDuplicates bool) (ChainsStats, error) {
	st := ChainsStats{Merged: true}
	order, err := datasets.ReadInputOrder(examples)
	if err != nil {
		return st, fmt.Errorf("chains: %w", err)
	}
	d := newDuplicates(keepDuplicates)
	mark := func(row *datasets.Chain) error {
		d.mark(row)
		return nil
	}
	read := func(f string) ([]datasets.Chain, error) { return datasets.ReadChains(f, datasets.ReadOptions{}) }
	rows, err := datasets.Assemble(datasets.PartsFor(out, datasets.Shard{}), out, order, read,
		func(c *datasets.Chain) string { return c.ID }, datasets.CreateChains, mark)
	if err != nil {
		return st, fmt.Errorf("chains: %w", err)
	}
	st.Rows, st.Kept = int(rows), d.kept
	return st, nil
}

// duplicates decides the last verdict (not_duplicate) and keep of chain
// rows taken in order: a chain is a duplicate when an earlier kept chain has
// the same normalized text.
type duplicates struct {
	seen map[string]string // normalized-chain hash → id of the first kept chain with it
	keep bool              // keep duplicates anyway
	kept int
}

func newDuplicates(keep bool) *duplicates { return &duplicates{seen: map[string]string{}, keep: keep} }

func (d *duplicates) mark(row *datasets.Chain) {
	others := true
	for _, v := range row.Verdicts {
		others = others && v.Pass
	}
	h := chainHash(row.Chain)
	first, dup := d.seen[h]
	switch {
	case dup && d.keep:
		row.Verdicts = append(row.Verdicts, datasets.Verdict{Name: VerdictDuplicate, Pass: true,
			Detail: "same text as the kept chain of " + first + "; kept (keep_duplicates)", HasDetail: true})
		dup = false
	case dup:
		row.Verdicts = append(row.Verdicts, datasets.Verdict{Name: VerdictDuplicate, Detail: "same text as the kept chain of " + first, HasDetail: true})
	default:
		row.Verdicts = append(row.Verdicts, datasets.Verdict{Name: VerdictDuplicate, Pass: true})
	}
	row.Keep = others && !dup
	if row.Keep {
		if _, ok := d.seen[h]; !ok {
			d.seen[h] = row.ID
		}
		d.kept++
	}
}

// chainGen turns examples into chain rows.
type chainGen struct {
	cfg  ChainsConfig
	task *datasets.Task
	kind rewardmodel.TaskKind
}

// candidate is one teacher sample on its way to a row.
type candidate struct {
	ex      *datasets.Example
	prompt  []datasets.Message
	text    string // the teacher's output; for a labelled free-form chain, the assembled chain
	free    FreeChain
	tagged  bool   // the teacher already wrote tags
	plain   bool   // step tags stripped on purpose (ChainsStage.Plain): no tag verdict
	cut     string // why the teacher's reply is not whole (Completion.Cut)
	steps   int    // a plain chain's steps before their tags were stripped
	problem string // labelling failure
}

func (g *chainGen) prompt(ex *datasets.Example) []datasets.Message {
	p := Parts(g.task, ex, g.cfg.Taxonomy, g.cfg.Prompt, false)
	// The policy learns the tag names from its chains; the teacher must be
	// told them, or it invents its own and nothing is kept.
	p.Instruction += "\n\n" + TagGuide(g.cfg.Taxonomy)
	p.System = g.cfg.System
	var msgs []datasets.Message
	for _, m := range tokenize.DefaultPromptLayout.Messages(p, len(p.Profile)) {
		msgs = append(msgs, datasets.Message{Role: m.Role, Content: m.Content})
	}
	return msgs
}

func (g *chainGen) batch(ctx context.Context, exs []datasets.Example) ([]datasets.Chain, error) {
	var cands []*candidate
	for i := range exs {
		p := g.prompt(&exs[i])
		for range g.cfg.Samples {
			cands = append(cands, &candidate{ex: &exs[i], prompt: p})
		}
	}
	// Replies of an interrupted attempt at this batch are not asked again.
	pend, err := readPending(g.pendingFile())
	if err != nil {
		return nil, err
	}
	texts := make([]Completion, len(cands))
	var ask []int // candidates whose replies are asked for
	var prompts [][]datasets.Message
	for i := 0; i < len(cands); i += g.cfg.Samples {
		c := cands[i]
		if r, ok := pend[c.ex.ID]; ok && r.Prompt == promptHash(c.prompt) && len(r.Replies) == g.cfg.Samples {
			copy(texts[i:], r.Replies)
			continue
		}
		for k := i; k < i+g.cfg.Samples; k++ {
			ask = append(ask, k)
			prompts = append(prompts, cands[k].prompt)
		}
	}
	if len(prompts) > 0 {
		got, err := g.cfg.Teacher.Complete(ctx, prompts)
		if err != nil {
			err = fmt.Errorf("chains: %w", err) // teachers name themselves in their errors
			var pe *PartialError
			if errors.As(err, &pe) && len(pe.Done) == len(prompts) && len(got) == len(prompts) {
				for n, k := range ask {
					if pe.Done[n] {
						texts[k] = got[n]
					}
				}
				// Interrupted, or one request failed for good: keep the
				// replies of the examples whose every sample came back, so
				// a rerun does not pay for them again.
				done := map[int]bool{}
				for n, k := range ask {
					done[k] = pe.Done[n]
				}
				keep := pendingReplies{}
				for i := 0; i < len(cands); i += g.cfg.Samples {
					whole := true
					for k := i; k < i+g.cfg.Samples; k++ {
						whole = whole && (done[k] || !slices.Contains(ask, k))
					}
					if whole {
						keep[cands[i].ex.ID] = pendingExample{Prompt: promptHash(cands[i].prompt), Replies: texts[i : i+g.cfg.Samples]}
					}
				}
				if werr := writePending(g.pendingFile(), keep); werr != nil {
					return nil, fmt.Errorf("%w (and keeping the replies that came back: %v)", err, werr)
				}
			}
			return nil, err
		}
		if len(got) != len(prompts) {
			return nil, fmt.Errorf("chains: teacher %s returned %d completions for %d prompts", g.cfg.Teacher.Name(), len(got), len(prompts))
		}
		for n, k := range ask {
			texts[k] = got[n]
		}
	}
	return g.rows(ctx, cands, texts)
}

// pendingReplies are the teacher's replies to the examples of a batch that
// did not finish (interrupted, or another request failed for good), by
// example id, kept in the parts folder until the batch is done.
type pendingReplies map[string]pendingExample

type pendingExample struct {
	Prompt  string       `json:"prompt_sha256"` // the prompt they answer
	Replies []Completion `json:"replies"`       // one per sample
}

// pendingFile is this worker's file of pending replies.
func (g *chainGen) pendingFile() string {
	name := "pending-all.json"
	if g.cfg.Shard.Count > 1 {
		name = fmt.Sprintf("pending-%dof%d.json", g.cfg.Shard.Index, g.cfg.Shard.Count)
	}
	return filepath.Join(datasets.PartsFor(g.cfg.Out, datasets.Shard{}).Dir, name)
}

func promptHash(msgs []datasets.Message) string {
	h := sha256.New()
	for _, m := range msgs {
		fmt.Fprintf(h, "%d:%s%d:%s", len(m.Role), m.Role, len(m.Content), m.Content)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func readPending(path string) (pendingReplies, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var p pendingReplies
	if err == nil {
		err = json.Unmarshal(b, &p)
	}
	if err != nil {
		return nil, fmt.Errorf("chains: pending teacher replies %s: %v: delete it (its replies are then asked for again)", path, err)
	}
	return p, nil
}

func writePending(path string, p pendingReplies) error {
	if len(p) == 0 {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return renameio.WriteFile(path, b, 0o644)
}

// rows labels, filters and records the candidates with their teacher replies.
func (g *chainGen) rows(ctx context.Context, cands []*candidate, texts []Completion) ([]datasets.Chain, error) {
	var toLabel [][]string
	var labelled []*candidate
	for i, c := range cands {
		c.text, c.cut = texts[i].Text, texts[i].Cut
		if c.cut != "" {
			c.problem = c.cut
			continue
		}
		if carriesTags(c.text, g.cfg.Taxonomy) {
			c.tagged = true
			continue
		}
		c.free = ParseFreeChain(c.text)
		if len(c.free.Steps) == 0 {
			c.problem = "no reasoning steps in the teacher's output"
			continue
		}
		toLabel = append(toLabel, c.free.Steps)
		labelled = append(labelled, c)
	}
	if len(toLabel) > 0 {
		labels, err := g.cfg.Labeller.Label(ctx, toLabel)
		if err != nil {
			return nil, fmt.Errorf("chains: labeller %s: %w", g.cfg.Labeller.Name(), err)
		}
		if len(labels) != len(toLabel) {
			return nil, fmt.Errorf("chains: labeller %s returned %d labellings for %d chains", g.cfg.Labeller.Name(), len(labels), len(toLabel))
		}
		for i, c := range labelled {
			if labels[i].Problem != "" {
				c.problem = labels[i].Problem
				continue
			}
			if len(labels[i].Tags) != len(c.free.Steps) {
				c.problem = fmt.Sprintf("labeller %s gave %d tags for %d steps", g.cfg.Labeller.Name(), len(labels[i].Tags), len(c.free.Steps))
				continue
			}
			c.text = AssembleChain(labels[i].Tags, c.free.Steps, c.free.Answer)
		}
	}
	rows := make([]datasets.Chain, len(cands))
	for i, c := range cands {
		rows[i] = g.row(c)
	}
	return rows, nil
}

// carriesTags: the teacher wrote the tagged-chain format (docs/formats.md) itself (any taxonomy
// tag), so its chain is validated as is, not relabelled. A <think> alone does not count: reasoning
// models (DeepSeek-R1 style, or a server's reasoning_content put back in front) wrap free-form
// reasoning in it, which is labelled like any free-form chain.
func carriesTags(text string, tx rewardmodel.Taxonomy) bool {
	for _, t := range tx {
		if strings.Contains(text, "<"+t.Name+">") {
			return true
		}
	}
	return false
}

// row filters one candidate and records it with its verdicts; the
// duplicates verdict, which depends on the chains before it, is MergeChains'.
func (g *chainGen) row(c *candidate) datasets.Chain {
	labeller := "given"
	if !c.tagged {
		labeller = g.cfg.Labeller.Name()
	}
	row := datasets.Chain{ID: c.ex.ID, Prompt: c.prompt, Chain: c.text, Gold: c.ex.Output, HasGold: c.ex.HasOutput,
		Teacher: g.cfg.Teacher.Name() + "; labeller=" + labeller}
	check := rewardmodel.CheckTags(c.text, g.cfg.Taxonomy)
	if c.problem == "" {
		row.Answer = check.Answer
		for _, s := range check.Spans {
			row.Spans = append(row.Spans, datasets.Span{Tag: s.Tag, Text: c.text[s.Start:s.End], Start: int32(s.Start), End: int32(s.End)})
		}
	} else {
		row.Answer = c.free.Answer
	}

	verdict := func(name string, pass bool, detail string) {
		row.Verdicts = append(row.Verdicts, datasets.Verdict{Name: name, Pass: pass, Detail: detail, HasDetail: detail != ""})
	}
	// Answer.
	threshold := g.cfg.Filter.threshold(g.kind)
	switch {
	case !c.ex.HasOutput:
		verdict(VerdictAnswer, false, "no gold output to check against")
	case c.cut != "":
		verdict(VerdictAnswer, false, c.cut)
	case c.tagged && !check.OneAnswer || !c.tagged && !c.free.HasAnswer:
		verdict(VerdictAnswer, false, "no answer found")
	default:
		rw := rewardmodel.TaskReward(g.kind, row.Answer, c.ex.Output)
		verdict(VerdictAnswer, rw >= threshold, fmt.Sprintf("r_task %.3f, need %.3f", rw, threshold))
	}
	// Tags.
	switch {
	case c.problem != "":
		verdict(VerdictTags, false, c.problem)
	case c.plain:
		verdict(VerdictTags, true, "plain chain: step tags stripped on purpose")
	case check.Reward() < 1:
		verdict(VerdictTags, false, strings.Join(check.Problems, "; "))
	default:
		verdict(VerdictTags, true, "")
	}
	// Length.
	f := g.cfg.Filter
	n := len(row.Spans)
	if c.plain {
		n = c.steps
	}
	lengthOK := n >= f.MinSteps && n <= f.MaxSteps && len(row.Chain) <= f.MaxChars
	verdict(VerdictLength, lengthOK, fmt.Sprintf("%d steps in [%d, %d], %d bytes ≤ %d", n, f.MinSteps, f.MaxSteps, len(row.Chain), f.MaxChars))
	return row
}

// chainHash is the hash of a chain's text lower-cased, with punctuation
// dropped and whitespace runs made one space, so trivially different copies
// collide. Tag brackets count as text: a different labelling is a
// different chain.
func chainHash(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToLower(s) {
		switch {
		case unicode.IsSpace(r):
			space = true
		case unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("<>/_", r):
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteRune(r)
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return fmt.Sprintf("%x", sum[:16])
}

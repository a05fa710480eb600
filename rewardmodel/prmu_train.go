package rewardmodel

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/tokenize"
)

// PRMUPair is one Bradley–Terry comparison: for the user with this profile,
// Chosen should score above Rejected.
type PRMUPair struct {
	Profile  []string // profile item texts, most relevant first
	Chosen   string
	Rejected string
	User     string // whose profile it is, when known (SwapProfiles needs it)
}

// ProfileItemText writes a profile item as "field: value; …; date: D", the
// way prompts show it (pipeline's prompt layout uses the same form).
func ProfileItemText(t *datasets.Task, it *datasets.ProfileItem) string {
	parts := make([]string, 0, len(it.Fields)+1)
	for i, v := range it.Fields {
		name := fmt.Sprintf("field%d", i)
		if i < len(t.ProfileFields) {
			name = t.ProfileFields[i]
		}
		parts = append(parts, name+": "+v)
	}
	if it.HasDate {
		parts = append(parts, "date: "+it.Date)
	}
	return strings.Join(parts, "; ")
}

// prmuCandidates bounds the other users' examples searched for a similar input.
const prmuCandidates = 32

// PRMUPairs makes one pair per example with a gold output: the gold is
// chosen over, for tasks with a label set, another label drawn at random,
// else the output another user gave for the most similar input (BM25 among
// up to 32 drawn examples of other users). Profiles keep the topK items
// most relevant to the input by BM25 (topK <= 0: all). Deterministic in seed.
func PRMUPairs(t *datasets.Task, examples []datasets.Example, topK int, seed uint64) ([]PRMUPair, error) {
	return prmuPairs(t, examples, topK, false, seed)
}

// prmuPairs is PRMUPairs with the profile items picked as the prompts pick
// them: the topK most relevant by BM25, or with recency the topK newest.
func prmuPairs(t *datasets.Task, examples []datasets.Example, topK int, recency bool, seed uint64) ([]PRMUPair, error) {
	r := rand.New(rand.NewPCG(seed, 0x70616972))
	var pairs []PRMUPair
	for i := range examples {
		e := &examples[i]
		if !e.HasOutput || len(e.Profile) == 0 {
			continue
		}
		var rejected string
		if len(t.Labels) > 1 {
			// Another label, not the gold read as the task reads answers: a
			// gold " [1]" (LaMP's evaluator strips it) or a rating "4.0" is
			// the label "[1]" or "4", which would make a pair of one answer.
			kind := Classification
			if t.Kind == datasets.Rating {
				kind = Rating
			}
			for rejected = e.Output; TaskReward(kind, rejected, e.Output) == 1 || rejected == e.Output; {
				rejected = t.Labels[r.IntN(len(t.Labels))]
			}
		} else {
			rejected = otherUsersOutput(e, examples, r)
			if rejected == "" {
				continue
			}
		}
		k := topK
		if k <= 0 || k > len(e.Profile) {
			k = len(e.Profile)
		}
		var prof []string
		order := datasets.TopKBM25
		if recency {
			order = func(_ *datasets.Task, e *datasets.Example, k int) []int { return datasets.TopKRecent(e, k) }
		}
		for _, idx := range order(t, e, k) {
			prof = append(prof, ProfileItemText(t, &e.Profile[idx]))
		}
		pairs = append(pairs, PRMUPair{Profile: prof, Chosen: e.Output, Rejected: rejected, User: e.User})
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("prmu pairs: none of %d %s examples gives a pair (gold outputs and profiles needed)", len(examples), t.Name)
	}
	return pairs, nil
}

// PolicySamplePairs makes the pairs of one prompt's policy samples ("gold ≻
// a low-scoring policy sample", docs/rewards.md): the gold output is chosen over each
// distinct sample answer whose task reward is below maxReward. samples and
// rewards run in parallel.
func PolicySamplePairs(profile []string, gold string, samples []string, rewards []float64, maxReward float64) ([]PRMUPair, error) {
	if len(samples) != len(rewards) {
		return nil, fmt.Errorf("policy sample pairs: %d samples, %d rewards", len(samples), len(rewards))
	}
	if len(profile) == 0 {
		return nil, fmt.Errorf("policy sample pairs: empty profile")
	}
	var pairs []PRMUPair
	seen := map[string]bool{strings.TrimSpace(gold): true}
	for i, s := range samples {
		if key := strings.TrimSpace(s); rewards[i] < maxReward && !seen[key] {
			seen[key] = true
			pairs = append(pairs, PRMUPair{Profile: profile, Chosen: gold, Rejected: s})
		}
	}
	return pairs, nil
}

// otherUsersOutput is another user's output for an input like e's, "" when
// no other user's differing output turns up.
func otherUsersOutput(e *datasets.Example, examples []datasets.Example, r *rand.Rand) string {
	var cands []*datasets.Example
	var docs []string
	for range prmuCandidates * 4 {
		o := &examples[r.IntN(len(examples))]
		if o.HasOutput && o.Output != e.Output && (o.User != e.User || e.User == "") && o.ID != e.ID {
			cands = append(cands, o)
			docs = append(docs, o.Input)
			if len(cands) == prmuCandidates {
				break
			}
		}
	}
	if len(cands) == 0 {
		return ""
	}
	scores := datasets.BM25Scores(e.Input, docs)
	best := 0
	for i, s := range scores {
		if s > scores[best] {
			best = i
		}
	}
	return cands[best].Output
}

// ExampleSet is one task's examples (a split of a LaMP task or of the
// synthetic benchmark).
type ExampleSet struct {
	Task     *datasets.Task
	Examples []datasets.Example
}

// SynthSets returns every task's examples of one split of the synthetic benchmark.
func SynthSets(d *datasets.SynthData, split string) ([]ExampleSet, error) {
	var out []ExampleSet
	for _, task := range d.Config.Tasks {
		set := d.Set(task, split)
		if set == nil {
			return nil, fmt.Errorf("prmu: the benchmark has no %s %s set", task, split)
		}
		out = append(out, ExampleSet{Task: set.Task, Examples: set.Examples})
	}
	return out, nil
}

// SetPairs makes the pairs of several sets (PRMUPairs with seed+i for set i).
func SetPairs(sets []ExampleSet, topK int, seed uint64) ([]PRMUPair, error) {
	return setPairs(sets, topK, false, seed)
}

func setPairs(sets []ExampleSet, topK int, recency bool, seed uint64) ([]PRMUPair, error) {
	var all []PRMUPair
	for i, s := range sets {
		p, err := prmuPairs(s.Task, s.Examples, topK, recency, seed+uint64(i))
		if err != nil {
			return nil, err
		}
		all = append(all, p...)
	}
	return all, nil
}

// SynthPRMUPairs makes the pairs of every task of one split of the
// synthetic benchmark, each profile cut to its topK items most relevant to
// the input (topK <= 0: all), as prompts show them.
func SynthPRMUPairs(d *datasets.SynthData, split string, topK int, seed uint64) ([]PRMUPair, error) {
	sets, err := SynthSets(d, split)
	if err != nil {
		return nil, err
	}
	return SetPairs(sets, topK, seed)
}

// PRMURecipe is how TrainPRMUOnSets makes a PRMU.
type PRMURecipe struct {
	Config PRMUConfig // Config.Encoder chooses a text encoder over the bag of tokens
	Train  PRMUTrainOptions
	Vocab  int // bag: tokenizer vocab size (default 512)
	TopK   int // profile items per pair, as the prompts' top_k (0: all)
	// Recency picks a pair's profile items newest first, as prompts with
	// retrieval recency do (and RL's PRMU scoring reads them); false: BM25.
	Recency bool
	// EmbeddingCache is a cache file of the encoder's embeddings (as
	// exported), read and extended ("": in memory; a saved frozen PRMU keeps
	// its own copy either way).
	EmbeddingCache string
	// Extra pairs are trained on besides the sets' (e.g. PolicySamplePairs).
	Extra []PRMUPair
}

// Settings are what decide the PRMU a recipe trains (with its data): a
// finished PRMU is reused only with the same ones.
func (r PRMURecipe) Settings() (train.RunSettings, error) {
	s, err := train.SettingsOf(r.Config)
	if err != nil {
		return nil, err
	}
	o := r.Train.defaults()
	s = s.Set("steps", o.Steps).Set("pairs_per_step", o.PairsPerStep).Set("lr", o.LR).Set("pair_seed", o.Seed).
		Set("tokenizer_vocab", r.Vocab).Set("top_k", r.TopK)
	if r.Recency { // only then: a BM25 PRMU trained before keeps its settings
		s = s.Set("retrieval", "recency")
	}
	return s, nil
}

// TaskAccuracy is a PRMU's pair accuracy on one task's pairs.
type TaskAccuracy struct {
	Task     string
	Pairs    int
	Accuracy float64
}

// TrainPRMUOnSets trains a PRMU on the pairs of the train sets — with a
// tokenizer learned on them, or with the text encoder Config.Encoder names —
// and measures the pair accuracy on each dev set (the overall figure goes to
// the model's Info). The model is not saved.
func TrainPRMUOnSets(ctx context.Context, trainSets, devSets []ExampleSet, r PRMURecipe) (*PRMU, PRMUTrainResult, []TaskAccuracy, error) {
	pairs, err := setPairs(trainSets, r.TopK, r.Recency, r.Train.Seed)
	if err != nil {
		return nil, PRMUTrainResult{}, nil, err
	}
	pairs = append(pairs, r.Extra...)
	p, res, err := r.train(ctx, pairs)
	if err != nil {
		return nil, res, nil, err
	}
	var accs []TaskAccuracy
	var all []PRMUPair
	for i, s := range devSets {
		dev, err := prmuPairs(s.Task, s.Examples, r.TopK, r.Recency, r.Train.Seed+uint64(i))
		if err == nil {
			var acc float64
			if acc, err = p.PairAccuracy(ctx, dev); err == nil {
				accs = append(accs, TaskAccuracy{Task: s.Task.Name, Pairs: len(dev), Accuracy: acc})
				all = append(all, dev...)
			}
		}
		if err != nil {
			p.Close()
			return nil, res, nil, fmt.Errorf("prmu dev accuracy: %w", err)
		}
	}
	if len(all) > 0 {
		if p.Info.DevAccuracy, err = p.PairAccuracy(ctx, all); err != nil {
			p.Close()
			return nil, res, nil, fmt.Errorf("prmu dev accuracy: %w", err)
		}
		p.Info.DevPairs = len(all)
	}
	return p, res, accs, nil
}

// train makes the recipe's PRMU from the pairs.
func (r PRMURecipe) train(ctx context.Context, pairs []PRMUPair) (*PRMU, PRMUTrainResult, error) {
	if r.Config.Encoder == nil {
		if r.Vocab == 0 {
			r.Vocab = 512
		}
		tok, err := TrainPRMUTokenizer(pairs, r.Vocab)
		if err != nil {
			return nil, PRMUTrainResult{}, err
		}
		return TrainPRMU(ctx, r.Config, tok, pairs, r.Train)
	}
	ec := r.Config.Defaults().Encoder
	if err := ec.validate(); err != nil {
		return nil, PRMUTrainResult{}, err
	}
	enc, err := LoadTextEncoder(ec.Dir, EncoderOptions{Pooling: ec.Pooling, MaxTokens: ec.MaxTokens, Session: r.Train.Session})
	if err != nil {
		return nil, PRMUTrainResult{}, fmt.Errorf("train prmu: %w", err)
	}
	var cache *EmbeddingCache
	if r.EmbeddingCache != "" {
		if cache, err = OpenEmbeddingCache(enc, r.EmbeddingCache); err != nil {
			enc.Close()
			return nil, PRMUTrainResult{}, fmt.Errorf("train prmu: %w", err)
		}
	}
	p, res, err := TrainEncoderPRMU(ctx, r.Config, enc, cache, pairs, r.Train)
	if err == nil && cache != nil {
		if err = cache.Save(); err != nil {
			p.Close()
			p = nil
		}
	}
	return p, res, err
}

// TrainSynthPRMU is TrainPRMUOnSets on the synthetic benchmark: trained on
// its train users, measured on its dev users.
func TrainSynthPRMU(ctx context.Context, d *datasets.SynthData, r PRMURecipe) (*PRMU, PRMUTrainResult, []TaskAccuracy, error) {
	trainSets, err := SynthSets(d, "train")
	if err != nil {
		return nil, PRMUTrainResult{}, nil, err
	}
	devSets, err := SynthSets(d, "dev")
	if err != nil {
		return nil, PRMUTrainResult{}, nil, err
	}
	return TrainPRMUOnSets(ctx, trainSets, devSets, r)
}

// TrainPRMUTokenizer learns a small byte-level BPE on the pairs' texts,
// tokenized as PRMU reads them.
func TrainPRMUTokenizer(pairs []PRMUPair, vocabSize int) (*tokenize.Tokenizer, error) {
	seen := map[string]bool{}
	var corpus []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			corpus = append(corpus, prmuText(s))
		}
	}
	for _, p := range pairs {
		for _, it := range p.Profile {
			add(it)
		}
		add(p.Chosen)
		add(p.Rejected)
	}
	tok, err := tokenize.Train(tokenize.TrainOptions{Corpus: corpus, VocabSize: vocabSize, SpecialTokens: []string{"<|endoftext|>"}})
	if err != nil {
		return nil, fmt.Errorf("prmu tokenizer: %w", err)
	}
	return tok, nil
}

// PRMUTrainOptions configure TrainPRMU.
type PRMUTrainOptions struct {
	Steps        int         // optimizer steps (default 300)
	PairsPerStep int         // pairs per step (default 32)
	LR           float64     // peak AdamW learning rate (default 3e-3), cosine decay after 10 warmup steps
	Seed         uint64      // pair order
	Session      ort.Options // for the training and the scoring session
	// Dir, when set, keeps checkpoints and the step log: a rerun resumes
	// (onnx/train's Loop). "" keeps nothing.
	Dir             string
	CheckpointEvery int // steps; 0: at the end and when stopped
	// Progress hears of every step (Task "prmu"; Metrics loss and
	// pair_accuracy, the training pairs').
	Progress train.ProgressFunc
	// MaxMemoryGB bounds an encoder LoRA phase's estimated peak, as
	// train.MemoryLimit reads it (0: the memory free; negative: no check);
	// MemoryKnobs name the settings a refusal asks to lower.
	MaxMemoryGB float64
	MemoryKnobs train.MemoryKnobs
	FrozenKnob  string // how to train the encoder frozen instead, in the caller's terms
}

func (o PRMUTrainOptions) defaults() PRMUTrainOptions {
	if o.Steps == 0 {
		o.Steps = 300
	}
	if o.PairsPerStep == 0 {
		o.PairsPerStep = 32
	}
	if o.LR == 0 {
		o.LR = 3e-3
	}
	return o
}

// PRMUTrainResult sums up a training run.
type PRMUTrainResult struct {
	Losses     []float64 // per step
	Accuracies []float64 // training pair accuracy per step
	Skipped    int       // steps without an update (non-finite gradient)
	Duration   time.Duration
	// LoRAMemory is an encoder LoRA phase's peak-memory estimate (zero
	// without one, or without the encoder's config.json sizes).
	LoRAMemory train.MemoryEstimate
}

// TrainPRMU builds a bag-of-tokens PRMU of cfg (Vocab defaults to the
// tokenizer's) and trains it Bradley–Terry on the pairs: −log σ(s(chosen) −
// s(rejected)), AdamW in Go, forward and backward in ORT. Each step feeds
// PairsPerStep pairs as 2·PairsPerStep rows: chosen responses first, then
// rejected ones. TrainEncoderPRMU does the same with a text encoder.
func TrainPRMU(ctx context.Context, cfg PRMUConfig, tok *tokenize.Tokenizer, pairs []PRMUPair, o PRMUTrainOptions) (*PRMU, PRMUTrainResult, error) {
	start := time.Now()
	var res PRMUTrainResult
	o, err := o.check(pairs)
	if err != nil {
		return nil, res, err
	}
	if tok == nil {
		return nil, res, fmt.Errorf("train prmu: no tokenizer")
	}
	if cfg.Encoder != nil {
		return nil, res, fmt.Errorf("train prmu: the config names a text encoder: train it with TrainEncoderPRMU")
	}
	if cfg.Vocab == 0 {
		cfg.Vocab = tok.VocabSize()
	}
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, res, fmt.Errorf("train prmu: %w", err)
	}
	m, err := BuildPRMU(cfg)
	if err != nil {
		return nil, res, fmt.Errorf("train prmu: %w", err)
	}
	feed, err := newBagFeed(tok, cfg, pairs, min(o.PairsPerStep, len(pairs)))
	if err != nil {
		return nil, res, fmt.Errorf("train prmu: %w", err)
	}
	defer feed.close()
	weights, err := runPRMUTraining(ctx, m, feed, []string{prmuWeightPrefix + "*"}, len(pairs), o, &res)
	if err != nil {
		return nil, res, fmt.Errorf("train prmu: %w", err)
	}
	trained, err := train.ExportModel(m, weights, nil)
	if err != nil {
		return nil, res, fmt.Errorf("train prmu: %w", err)
	}
	p, err := NewPRMU(cfg, tok, trained, o.Session)
	if err != nil {
		return nil, res, fmt.Errorf("train prmu: %w", err)
	}
	res.finish(p, o, len(pairs), start)
	return p, res, nil
}

// check fills the defaults and refuses settings and pairs that cannot train.
func (o PRMUTrainOptions) check(pairs []PRMUPair) (PRMUTrainOptions, error) {
	o = o.defaults()
	if o.Steps < 0 || o.PairsPerStep < 0 || !(o.LR > 0) || math.IsInf(o.LR, 0) {
		return o, fmt.Errorf("train prmu: steps %d, pairs per step %d, lr %v: want positive values", o.Steps, o.PairsPerStep, o.LR)
	}
	if len(pairs) == 0 {
		return o, fmt.Errorf("train prmu: no pairs")
	}
	for i, p := range pairs {
		if len(p.Profile) == 0 {
			return o, fmt.Errorf("train prmu: pair %d has an empty profile", i)
		}
	}
	return o, nil
}

// finish records the run in the model's Info.
func (res *PRMUTrainResult) finish(p *PRMU, o PRMUTrainOptions, pairs int, start time.Time) {
	res.Duration = time.Since(start)
	p.Info = PRMUTrainInfo{Steps: o.Steps, Pairs: pairs, Seed: o.Seed, TrainSeconds: res.Duration.Seconds()}
	if n := len(res.Losses); n > 0 {
		p.Info.FinalLoss = res.Losses[n-1]
	}
}

// prmuFeed lays out the inputs of one training step: pair j's chosen
// response is row j, its rejected one row P+j, both with pair j's profile.
// The inputs are the same tensors every step; fill rewrites their data.
type prmuFeed interface {
	// shapes are the step inputs' fixed shapes (for Specialize).
	shapes() map[string][]int64
	inputs() map[string]ort.Value
	fill(pairs []int) error
	close()
}

// runPRMUTraining derives the Bradley–Terry training graph of m for the
// feed's shapes, trains the weights matching params for o.Steps steps of
// pairs drawn in shuffled epochs, and returns the trained weights by name.
func runPRMUTraining(ctx context.Context, m *onnxpb.ModelProto, feed prmuFeed, params []string, nPairs int, o PRMUTrainOptions, res *PRMUTrainResult) (map[string][]float32, error) {
	P := min(o.PairsPerStep, nPairs)
	lm := proto.Clone(m).(*onnxpb.ModelProto)
	loss, err := train.AddPairwiseLoss(lm, PRMUScoreOutput)
	if err != nil {
		return nil, err
	}
	shapes := feed.shapes()
	shapes[train.ChosenInput], shapes[train.RejectedInput] = []int64{int64(P)}, []int64{int64(P)}
	sp, err := train.Specialize(lm, shapes)
	if err != nil {
		return nil, err
	}
	tg, err := train.Differentiate(sp, loss, train.SelectParams(sp, params), []string{train.PairAccuracyOutput})
	if err != nil {
		return nil, err
	}
	tr, err := train.NewTrainer(tg, train.TrainerOptions{
		Schedule:    train.Schedule{Peak: o.LR, Warmup: min(10, o.Steps), Total: o.Steps, MinRatio: 0.1},
		WeightDecay: 0.01,
		ClipNorm:    1,
		Session:     o.Session,
	})
	if err != nil {
		return nil, err
	}
	defer tr.Close()

	in := maps.Clone(feed.inputs())
	ci, ri := make([]int64, P), make([]int64, P)
	for j := range P {
		ci[j], ri[j] = int64(j), int64(P+j)
	}
	for name, idx := range map[string][]int64{train.ChosenInput: ci, train.RejectedInput: ri} {
		v, err := ort.NewTensor([]int64{int64(P)}, idx)
		if err != nil {
			return nil, err
		}
		defer v.Destroy()
		in[name] = v
	}

	// The stream keeps the pair order PRMUs were trained with before the loop.
	loop := &train.Loop{Trainer: tr, Data: feedData{feed: feed, in: in, n: nPairs}, BatchSize: P, Steps: o.Steps,
		Dir: o.Dir, CheckpointEvery: o.CheckpointEvery, Seed: o.Seed, Stream: 0x73746570, Stage: "prmu",
		Progress: func(p train.Progress) {
			if p.Note == "" {
				res.Losses = append(res.Losses, p.Metrics["loss"])
				acc, ok := p.Metrics[train.PairAccuracyOutput]
				if !ok {
					acc = math.NaN()
				}
				res.Accuracies = append(res.Accuracies, acc)
				if p.Metrics["skipped"] == 1 {
					res.Skipped++
				}
			}
			o.Progress.Report(p)
		}}
	if _, err := loop.Run(ctx); err != nil {
		return nil, err
	}
	return tr.Weights(), nil
}

// feedData serves a feed's pairs to the training loop: the inputs are the
// same tensors every step, refilled for the drawn pairs.
type feedData struct {
	feed prmuFeed
	in   map[string]ort.Value
	n    int
}

func (d feedData) Len() int { return d.n }

func (d feedData) Batch(pairs []int) (map[string]ort.Value, func(), error) {
	if err := d.feed.fill(pairs); err != nil {
		return nil, nil, err
	}
	return d.in, func() {}, nil
}

// bagFeed feeds bags of tokens: every text is tokenized once, up front.
type bagFeed struct {
	profs            [][][]int64
	chosen, rejected [][]int64
	batch            *prmuBatch
	in               map[string]ort.Value
	release          func()
	stepProfs        [][][]int64
	stepResps        [][]int64
}

func newBagFeed(tok *tokenize.Tokenizer, cfg PRMUConfig, pairs []PRMUPair, P int) (*bagFeed, error) {
	enc := &prmuEncoder{tok: tok, seen: map[string][]int64{}}
	f := &bagFeed{profs: make([][][]int64, len(pairs)), chosen: make([][]int64, len(pairs)), rejected: make([][]int64, len(pairs))}
	K := 1 // every step has as many items as the longest profile
	for i, p := range pairs {
		for _, it := range p.Profile[:min(len(p.Profile), cfg.MaxItems)] {
			f.profs[i] = append(f.profs[i], enc.encode(it, cfg.MaxItemTokens))
		}
		K = max(K, len(f.profs[i]))
		f.chosen[i] = enc.encode(p.Chosen, cfg.MaxResponseTokens)
		f.rejected[i] = enc.encode(p.Rejected, cfg.MaxResponseTokens)
	}
	f.batch = newPRMUBatch(2*P, K, cfg.Vocab)
	var err error
	if f.in, f.release, err = f.batch.values(); err != nil {
		return nil, err
	}
	f.stepProfs, f.stepResps = make([][][]int64, 2*P), make([][]int64, 2*P)
	return f, nil
}

func (f *bagFeed) shapes() map[string][]int64 {
	b := f.batch
	return map[string][]int64{PRMUProfileBOW: {int64(b.B), int64(b.K), int64(b.V)}, PRMUResponseBOW: {int64(b.B), int64(b.V)}}
}

func (f *bagFeed) inputs() map[string]ort.Value { return f.in }

func (f *bagFeed) fill(pairs []int) error {
	P := len(pairs)
	for j, i := range pairs {
		f.stepProfs[j], f.stepProfs[P+j] = f.profs[i], f.profs[i]
		f.stepResps[j], f.stepResps[P+j] = f.chosen[i], f.rejected[i]
	}
	return f.batch.fill(f.stepProfs, f.stepResps)
}

func (f *bagFeed) close() { f.release() }

// PairAccuracy is the fraction of pairs whose chosen response the model
// scores strictly above the rejected one.
func (p *PRMU) PairAccuracy(ctx context.Context, pairs []PRMUPair) (float64, error) {
	if len(pairs) == 0 {
		return 0, fmt.Errorf("pair accuracy: no pairs")
	}
	profiles := make([][]string, 0, 2*len(pairs))
	responses := make([]string, 0, 2*len(pairs))
	for _, q := range pairs {
		profiles = append(profiles, q.Profile, q.Profile)
		responses = append(responses, q.Chosen, q.Rejected)
	}
	s, err := p.Score(ctx, profiles, responses)
	if err != nil {
		return 0, fmt.Errorf("pair accuracy: %w", err)
	}
	right := 0
	for i := range pairs {
		if s[2*i] > s[2*i+1] {
			right++
		}
	}
	return float64(right) / float64(len(pairs)), nil
}

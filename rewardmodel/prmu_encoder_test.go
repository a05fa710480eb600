package rewardmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/ort"
)

// encoderPRMUs are a frozen-encoder and a LoRA-tuned PRMU on the fixture
// encoder, trained briefly on a small benchmark and shared by the tests.
var encoderPRMUs struct {
	once         sync.Once
	data         *datasets.SynthData
	pairs        []PRMUPair // training pairs
	frozen, lora *PRMU
	loraRes      PRMUTrainResult
	err          error
}

func smallSynth(t testing.TB) *datasets.SynthData {
	t.Helper()
	c := datasets.DefaultSynthConfig()
	c.Users, c.Seed = 80, 2
	d, err := datasets.Synth(c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func sharedEncoderPRMUs(t *testing.T) (frozen, lora *PRMU) {
	t.Helper()
	if err := ort.Init(""); err != nil {
		t.Fatalf("ONNX Runtime is needed (make setup): %v", err)
	}
	s := &encoderPRMUs
	s.once.Do(func() {
		s.data = smallSynth(t)
		if s.pairs, s.err = SynthPRMUPairs(s.data, "train", 4, 1); s.err != nil {
			return
		}
		train := func(tuning string, loraSteps int) (*PRMU, PRMUTrainResult, error) {
			enc, err := LoadTextEncoder(encoderFixture, EncoderOptions{Session: quietSession})
			if err != nil {
				return nil, PRMUTrainResult{}, err
			}
			cfg := PRMUConfig{Seed: 1, Hidden: 32, Encoder: &PRMUEncoder{Dir: encoderFixture, Tuning: tuning, LoRASteps: loraSteps}}
			return TrainEncoderPRMU(context.Background(), cfg, enc, nil, s.pairs,
				PRMUTrainOptions{Steps: 300, PairsPerStep: 16, LR: 1e-2, Seed: 1, Session: quietSession})
		}
		if s.frozen, _, s.err = train(TuneFrozen, 0); s.err != nil {
			return
		}
		s.lora, s.loraRes, s.err = train(TuneLoRA, 12)
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.frozen, s.lora
}

// distinctTexts counts the distinct trimmed texts PRMU reads of the pairs
// (items past MaxItems and blank ones excluded).
func distinctTexts(pairs []PRMUPair, maxItems int) int {
	seen := map[string]bool{}
	for _, p := range pairs {
		for _, it := range p.Profile[:min(len(p.Profile), maxItems)] {
			if it = strings.TrimSpace(it); it != "" {
				seen[it] = true
			}
		}
		seen[strings.TrimSpace(p.Chosen)], seen[strings.TrimSpace(p.Rejected)] = true, true
	}
	return len(seen)
}

func devRows(t *testing.T, task string, n int) ([][]string, []string) {
	t.Helper()
	set := encoderPRMUs.data.Set(task, "dev")
	pairs, err := PRMUPairs(set.Task, set.Examples, 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	var profiles [][]string
	var responses []string
	for _, q := range pairs[:min(n, len(pairs))] {
		profiles, responses = append(profiles, q.Profile, q.Profile), append(responses, q.Chosen, q.Rejected)
	}
	return profiles, responses
}

// A frozen encoder embeds each distinct text of the training pairs once
// (training never re-encodes a profile); a training run on the same cache
// file encodes nothing; scoring the same rows twice encodes nothing the
// second time, nor after a save and load (the cache is in the PRMU's
// embeddings.arrow); an encoder with another hash drops the cache.
func TestEncoderPRMUCache(t *testing.T) {
	sharedEncoderPRMUs(t)
	ctx := context.Background()
	pairs := encoderPRMUs.pairs
	cfg := PRMUConfig{Seed: 1, Hidden: 32, Encoder: &PRMUEncoder{Dir: encoderFixture}}
	cachePath := filepath.Join(t.TempDir(), "cache.arrow")
	trainOn := func(enc *TextEncoder) (*PRMU, *EmbeddingCache) {
		t.Helper()
		cache, err := OpenEmbeddingCache(enc, cachePath)
		if err != nil {
			t.Fatal(err)
		}
		p, _, err := TrainEncoderPRMU(ctx, cfg, enc, cache, pairs, PRMUTrainOptions{Steps: 5, Seed: 1, Session: quietSession})
		if err != nil {
			t.Fatal(err)
		}
		if err := cache.Save(); err != nil {
			t.Fatal(err)
		}
		return p, cache
	}
	want := distinctTexts(pairs, 8)
	p1, c1 := trainOn(loadFixtureEncoder(t, EncoderOptions{}))
	defer p1.Close()
	st := p1.Encoder().Stats()
	t.Logf("first training: %d distinct texts of %d pairs, encoder %+v", want, len(pairs), st)
	if st.Texts != want || st.Runs != (want+encoderRunTexts-1)/encoderRunTexts || c1.Len() != want || c1.Invalidated {
		t.Fatalf("first training encoded %+v, cache %d texts; want each of %d distinct texts once, in runs of %d", st, c1.Len(), want, encoderRunTexts)
	}
	p2, c2 := trainOn(loadFixtureEncoder(t, EncoderOptions{}))
	defer p2.Close()
	if st := p2.Encoder().Stats(); st.Runs != 0 || c2.Len() != want {
		t.Fatalf("training again on the cache file encoded %+v (cache %d texts); want nothing", st, c2.Len())
	}

	// Scoring: the first run encodes each new dev text once, in a run of
	// its own (an embedding that does not depend on its batch), the second
	// nothing.
	profiles, responses := devRows(t, datasets.SynthTag, 20)
	before := p2.Encoder().Stats()
	first, err := p2.Score(ctx, profiles, responses)
	if err != nil {
		t.Fatal(err)
	}
	mid := p2.Encoder().Stats()
	again, err := p2.Score(ctx, profiles, responses)
	if err != nil {
		t.Fatal(err)
	}
	after := p2.Encoder().Stats()
	t.Logf("scoring %d rows: first run %d encoder runs / %d texts, second run %d / %d", len(responses),
		mid.Runs-before.Runs, mid.Texts-before.Texts, after.Runs-mid.Runs, after.Texts-mid.Texts)
	if n := mid.Runs - before.Runs; n == 0 || n != mid.Texts-before.Texts || after.Runs != mid.Runs || !slices.Equal(first, again) {
		t.Fatalf("encoder runs: %d for the first scoring's %d texts, %d for the second (want one per text, then 0); scores equal %v",
			mid.Runs-before.Runs, mid.Texts-before.Texts, after.Runs-mid.Runs, slices.Equal(first, again))
	}

	// Saved and loaded, the PRMU reads its cache from embeddings.arrow.
	dir := filepath.Join(t.TempDir(), "prmu")
	if err := p2.Save(dir); err != nil {
		t.Fatal(err)
	}
	q, got := reloadScores(t, dir, profiles, responses)
	if st := q.Encoder().Stats(); st.Runs != 0 || !slices.Equal(got, first) {
		t.Fatalf("after load: %+v encoder runs, scores equal %v; want no run and equal scores", st, slices.Equal(got, first))
	}

	// Another encoder (CLS pooling: another hash) drops the cache file and
	// encodes everything again; the file then carries the new hash.
	cls := loadFixtureEncoder(t, EncoderOptions{Pooling: EncoderPoolCLS})
	if cls.SHA256 == p2.Encoder().SHA256 {
		t.Fatal("CLS and mean pooling share an encoder hash")
	}
	p3, c3 := trainOn(cls)
	defer p3.Close()
	if st := p3.Encoder().Stats(); !c3.Invalidated || st.Texts != want {
		t.Fatalf("with another encoder: invalidated %v, encoded %+v; want the cache dropped and %d texts encoded", c3.Invalidated, st, want)
	}
	if _, enc, err := datasets.ReadEmbeddings(cachePath); err != nil || enc != cls.SHA256 {
		t.Fatalf("cache file after retraining: encoder %q, %v; want %q", enc, err, cls.SHA256)
	}

	// A loaded PRMU drops an embeddings.arrow of another encoder too.
	if err := c3.SaveAs(filepath.Join(dir, PRMUEmbeddingsFile)); err != nil {
		t.Fatal(err)
	}
	r, err := LoadPRMU(dir, quietSession)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Cache().Invalidated || r.Cache().Len() != 0 {
		t.Fatalf("loaded with another encoder's cache: invalidated %v, %d texts", r.Cache().Invalidated, r.Cache().Len())
	}
	// Every text is encoded again, each alone, and gives the same scores:
	// an embedding depends on its text only.
	if got, err := r.Score(ctx, profiles, responses); err != nil || !slices.Equal(got, first) || r.Encoder().Stats().Runs != r.Encoder().Stats().Texts {
		t.Fatalf("scores after the cache was dropped: equal %v, %v, %+v", slices.Equal(got, first), err, r.Encoder().Stats())
	}
}

// LoRA trains adapters through the encoder: the tuned encoder is a new one
// (another hash, other embeddings), saved with its adapters merged into the
// exported weights, and it scores the same after a save and load.
func TestEncoderPRMULoRA(t *testing.T) {
	frozen, lora := sharedEncoderPRMUs(t)
	res := encoderPRMUs.loraRes
	t.Logf("LoRA: %d head steps then %d LoRA steps in %v, loss %.4f → %.4f → %.4f", lora.Info.Steps, lora.Info.LoRASteps, res.Duration.Round(1e6),
		res.Losses[0], res.Losses[299], res.Losses[len(res.Losses)-1])
	if res.Skipped > 0 || len(res.Losses) != 300+12 || lora.Info.LoRASteps != 12 {
		t.Fatalf("LoRA training: %d steps, %d skipped", len(res.Losses), res.Skipped)
	}
	if lora.Config.Encoder.Tuning != TuneLoRA || lora.Encoder().SHA256 == frozen.Encoder().SHA256 || lora.Config.Encoder.SHA256 != lora.Encoder().SHA256 {
		t.Fatalf("tuned encoder %.12s, base %.12s, config %+v", lora.Encoder().SHA256, frozen.Encoder().SHA256, lora.Config.Encoder)
	}
	ctx := context.Background()
	texts := []string{"comedy", "description: a film about jokes and fights in the city; tag: comedy"}
	base, err := frozen.Encoder().Encode(ctx, texts)
	if err != nil {
		t.Fatal(err)
	}
	tuned, err := lora.Encoder().Encode(ctx, texts)
	if err != nil {
		t.Fatal(err)
	}
	diff := 0.0
	for i := range base {
		for j := range base[i] {
			diff = max(diff, math.Abs(float64(base[i][j]-tuned[i][j])))
		}
	}
	if diff < 1e-4 {
		t.Fatalf("the LoRA-tuned encoder embeds like the base one (max difference %g)", diff)
	}
	t.Logf("tuned vs base embeddings: max difference %.3g", diff)

	profiles, responses := devRows(t, datasets.SynthGen, 10)
	want, err := lora.Score(ctx, profiles, responses)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "lora")
	if err := lora.Save(dir); err != nil {
		t.Fatal(err)
	}
	m, err := ir.Load(filepath.Join(dir, PRMUEncoderDir, EncoderModelFile))
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := ir.Load(filepath.Join(encoderFixture, EncoderModelFile))
	if len(m.Graph.Node) != len(orig.Graph.Node) || len(m.Graph.Initializer) != len(orig.Graph.Initializer) {
		t.Fatalf("saved tuned encoder has %d nodes / %d initializers, the export %d / %d: adapters must be merged",
			len(m.Graph.Node), len(m.Graph.Initializer), len(orig.Graph.Node), len(orig.Graph.Initializer))
	}
	_, got := reloadScores(t, dir, profiles, responses)
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-6 {
			t.Fatalf("score %d: %v after load, %v before", i, got[i], want[i])
		}
	}
}

// Encoder PRMUs refuse what the bag refuses, score each row independently
// of its batch, and treat a blank profile item as no item.
func TestEncoderPRMUScoring(t *testing.T) {
	frozen, lora := sharedEncoderPRMUs(t)
	ctx := context.Background()
	for _, p := range []*PRMU{frozen, lora} {
		checkScoreRefusals(t, p)
		profiles, responses := devRows(t, datasets.SynthRate, 15)
		all, err := p.Score(ctx, profiles, responses)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, 5, len(responses) - 1} {
			one, err := p.Score(ctx, [][]string{append([]string{"  "}, profiles[i]...)}, responses[i:i+1])
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(one[0]-all[i]) > 1e-5 {
				t.Fatalf("%s: row %d scores %v alone with a blank item, %v in the batch", p.Config.Encoder.Tuning, i, one[0], all[i])
			}
		}
	}
	// Attention pooling over encoder embeddings trains too, frozen and
	// through LoRA, and ignores blank items.
	for _, tuning := range []string{TuneFrozen, TuneLoRA} {
		cfg := PRMUConfig{Seed: 3, Hidden: 16, Pool: PoolAttention, Encoder: &PRMUEncoder{Dir: encoderFixture, Tuning: tuning, LoRASteps: 2}}
		p, res, err := TrainEncoderPRMU(ctx, cfg, loadFixtureEncoder(t, EncoderOptions{}), nil, encoderPRMUs.pairs, PRMUTrainOptions{Steps: 20, PairsPerStep: 8, Seed: 3, Session: quietSession})
		if err != nil {
			t.Fatalf("%s attention pooling: %v", tuning, err)
		}
		defer p.Close()
		prof := encoderPRMUs.pairs[0].Profile
		s, err := p.Score(ctx, [][]string{prof, append(append([]string{}, prof...), "", " ")}, []string{"comedy", "comedy"})
		if err != nil || res.Skipped > 0 || math.Abs(s[0]-s[1]) > 1e-5 {
			t.Fatalf("%s attention pooling: scores %v (%v), %d steps skipped", tuning, s, err, res.Skipped)
		}
	}
	if _, err := NewPRMU(frozen.Config, nil, frozen.Model(), ort.Options{}); err == nil || !strings.Contains(err.Error(), "NewEncoderPRMU") {
		t.Fatalf("NewPRMU with an encoder config: %v", err)
	}
	enc := loadFixtureEncoder(t, EncoderOptions{})
	for _, c := range []struct {
		cfg  PRMUConfig
		want string
	}{
		{PRMUConfig{Encoder: &PRMUEncoder{}}, "encoder.dir"},
		{PRMUConfig{Encoder: &PRMUEncoder{Dir: "x", Tuning: "full"}}, "encoder.tuning"},
		{PRMUConfig{Encoder: &PRMUEncoder{Dir: "x", Pooling: "max"}}, "encoder.pooling"},
		{PRMUConfig{Encoder: &PRMUEncoder{Dir: "x", Tuning: TuneLoRA, LoRARank: -1}}, "encoder.lora_rank"},
		{PRMUConfig{Encoder: &PRMUEncoder{Dir: "x", LoRAAlpha: math.Inf(1)}}, "encoder.lora_alpha"},
	} {
		if _, _, err := TrainEncoderPRMU(ctx, c.cfg, enc, nil, encoderPRMUs.pairs[:4], PRMUTrainOptions{Steps: 1}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("config %+v: %v, want an error naming %s", c.cfg.Encoder, err, c.want)
		}
		enc = loadFixtureEncoder(t, EncoderOptions{}) // a failed training closes the encoder it was given
	}
}

// A saved encoder PRMU refuses to load with another encoder, a broken cache
// or a broken config, naming the file and the fix.
func TestEncoderPRMULoadRefuses(t *testing.T) {
	frozen, _ := sharedEncoderPRMUs(t)
	good := filepath.Join(t.TempDir(), "good")
	if err := frozen.Save(good); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{PRMUModelFile, PRMUConfigFile, PRMUEmbeddingsFile, filepath.Join(PRMUEncoderDir, EncoderModelFile),
		filepath.Join(PRMUEncoderDir, encoderTokenizerFile), filepath.Join(PRMUEncoderDir, encoderPoolingFile)} {
		if _, err := os.Stat(filepath.Join(good, f)); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		edit  func(dir string)
		wants []string
	}{
		{"another encoder", func(dir string) {
			path := filepath.Join(dir, PRMUEncoderDir, EncoderModelFile)
			m, _ := ir.Load(path)
			for _, t := range m.Graph.Initializer {
				if t.GetName() == "embeddings.LayerNorm.bias" {
					v, _ := ir.Float32s(t)
					v[0] += 0.5
					*t = *ir.Tensor(t.GetName(), t.GetDims(), v)
				}
			}
			ir.Write(m, path, ir.WriteOptions{})
		}, []string{"the head was trained with", "train the PRMU again"}},
		{"broken cache", func(dir string) { os.WriteFile(filepath.Join(dir, PRMUEmbeddingsFile), []byte("ARROW1 broken"), 0o644) }, []string{PRMUEmbeddingsFile, "delete the file"}},
		{"no encoder", func(dir string) { os.RemoveAll(filepath.Join(dir, PRMUEncoderDir)) }, []string{encoderTokenizerFile}},
		{"untrained config", func(dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, PRMUConfigFile))
			var f map[string]any
			json.Unmarshal(b, &f)
			delete(f["config"].(map[string]any)["encoder"].(map[string]any), "sha256")
			b, _ = json.Marshal(f)
			os.WriteFile(filepath.Join(dir, PRMUConfigFile), b, 0o644)
		}, []string{"encoder.sha256", "tagpr prmu train"}},
		{"tuning", func(dir string) { editFile(dir, PRMUConfigFile, `"tuning": "frozen"`, `"tuning": "full"`) }, []string{"encoder.tuning"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "prmu")
			if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
				t.Fatal(err)
			}
			c.edit(dir)
			p, err := LoadPRMU(dir, quietSession)
			if err == nil {
				p.Close()
				t.Fatal("loaded")
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// reloadScores loads the PRMU saved in dir and scores the rows with it.
func reloadScores(t *testing.T, dir string, profiles [][]string, responses []string) (*PRMU, []float64) {
	t.Helper()
	q, err := LoadPRMU(dir, quietSession)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	got, err := q.Score(context.Background(), profiles, responses)
	if err != nil {
		t.Fatal(err)
	}
	return q, got
}

func editFile(dir, name, old, new string) {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	os.WriteFile(filepath.Join(dir, name), []byte(strings.Replace(string(b), old, new, 1)), 0o644)
}

// A negative encoder setting is named alone, with its value: not in a
// message that also names a field the caller never set.
func TestEncoderConfigNamesTheBadField(t *testing.T) {
	for _, c := range []struct {
		enc           PRMUEncoder
		want, notWant string
	}{
		{PRMUEncoder{Dir: "x", MaxTokens: -5}, "encoder.max_tokens -5", "encoder.dim"},
		{PRMUEncoder{Dir: "x", Dim: -1}, "encoder.dim -1", "encoder.max_tokens"},
	} {
		err := PRMUConfig{Encoder: &c.enc}.Defaults().Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), c.notWant) {
			t.Errorf("%+v: %v, want an error naming %q and not %q", c.enc, err, c.want, c.notWant)
		}
	}
}

// The cache's memory is bounded: scoring a stream of new responses (an RL
// stage's) beside the same profile items keeps at most two generations of
// texts, the items read every round stay cached (never encoded twice), and
// a single call with more new texts than the cache holds still gets every
// embedding.
func TestEmbeddingCacheIsBounded(t *testing.T) {
	enc := loadFixtureEncoder(t, EncoderOptions{})
	defer func(b int64) { embeddingCacheBytes = b }(embeddingCacheBytes)
	const gen = 50
	embeddingCacheBytes = gen * int64(4*enc.Dim+perTextBytes)
	c := NewEmbeddingCache(enc, "")
	items := []string{"likes quiet films", "reads history books", "hates horror", "plays chess"}
	ctx := context.Background()
	var first [][]float32
	for round := 0; round < 40; round++ {
		texts := slices.Clone(items)
		for k := 0; k < 16; k++ {
			texts = append(texts, fmt.Sprintf("answer %d of round %d", k, round))
		}
		vecs, err := c.Embed(ctx, enc, texts, encoderRunTexts)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			first = vecs[:len(items)]
		}
		for i, v := range vecs[:len(items)] {
			if !slices.Equal(v, first[i]) {
				t.Fatalf("round %d: item %d's embedding changed", round, i)
			}
		}
		if c.Len() > 2*gen {
			t.Fatalf("round %d: the cache holds %d texts, more than two generations of %d", round, c.Len(), gen)
		}
	}
	if st := enc.Stats(); st.Texts != len(items)+40*16 {
		t.Fatalf("encoded %d texts, want the %d items once and each of the 640 answers once", st.Texts, len(items))
	}
	many := make([]string, 5*gen)
	for i := range many {
		many[i] = fmt.Sprintf("one of many new texts, number %d", i)
	}
	vecs, err := c.Embed(ctx, enc, append(many, many[0]), 64)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vecs {
		if len(v) != enc.Dim {
			t.Fatalf("text %d of a call larger than the cache: embedding of %d values, want %d", i, len(v), enc.Dim)
		}
	}
	if c.Len() > 2*gen {
		t.Fatalf("after a large call the cache holds %d texts, more than %d", c.Len(), 2*gen)
	}
}

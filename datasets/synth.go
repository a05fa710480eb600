package datasets

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The synthetic benchmark's tasks.
const (
	SynthTag  = "synth_tag"  // mirrors LaMP-2: tag a movie as this user would
	SynthRate = "synth_rate" // mirrors LaMP-3: the score this user gives a review
	SynthGen  = "synth_gen"  // short generation: a post title in this user's style
)

// SynthConfig sets the size of the synthetic benchmark. Equal configs give
// byte-identical datasets.
type SynthConfig struct {
	Seed           uint64
	Users          int      // users, split user-disjointly into train/dev/test
	QueriesPerUser int      // questions per user and task (all share the user's profile)
	ProfileMin     int      // profile items per user and task, drawn in [ProfileMin, ProfileMax]
	ProfileMax     int      //
	Tasks          []string // subset of SynthTag, SynthRate, SynthGen (default all)
	DevFrac        float64  // fraction of users in dev
	TestFrac       float64  // fraction of users in test
	// TitleCloserMiss is the share of title examples whose chain was written
	// by a teacher that misses the user's closing word: its chain and answer
	// leave it out, while the example's gold keeps it. Like a real teacher's
	// chains, they are then right but not the best: SFT imitates the miss and
	// only a reward against the user's own titles can teach the word back.
	// Which examples are missed is drawn apart from the data, so the examples
	// (and the profile rules' scores) are the same at every rate.
	TitleCloserMiss float64
}

// DemoTitleCloserMiss is the demo's TitleCloserMiss: most title chains miss
// the closing word, so SFT's greedy titles leave it out, yet a third keep it,
// so RL's samples find it (docs/benchmark.md).
const DemoTitleCloserMiss = 0.65

// DefaultSynthConfig is the size `make demo` trains on.
func DefaultSynthConfig() SynthConfig {
	return SynthConfig{Seed: 1, Users: 600, QueriesPerUser: 4, ProfileMin: 4, ProfileMax: 6,
		Tasks: []string{SynthTag, SynthRate, SynthGen}, DevFrac: 0.1, TestFrac: 0.1, TitleCloserMiss: DemoTitleCloserMiss}
}

func (c *SynthConfig) validate() error {
	if len(c.Tasks) == 0 {
		c.Tasks = []string{SynthTag, SynthRate, SynthGen}
	}
	switch {
	case c.Users < 3:
		return fmt.Errorf("synth: users %d: need at least 3 (one per split)", c.Users)
	case c.QueriesPerUser < 1:
		return fmt.Errorf("synth: queries per user %d: need at least 1", c.QueriesPerUser)
	case c.ProfileMin < 3 || c.ProfileMax < c.ProfileMin:
		return fmt.Errorf("synth: profile size [%d, %d]: need 3 ≤ min ≤ max", c.ProfileMin, c.ProfileMax)
	case !(c.DevFrac >= 0) || !(c.TestFrac >= 0): // NaN fails too
		return fmt.Errorf("synth: dev_frac %v, test_frac %v: want shares ≥ 0", c.DevFrac, c.TestFrac)
	case !(c.DevFrac+c.TestFrac < 1): // +Inf fails too
		return fmt.Errorf("synth: dev %.2f + test %.2f must leave users for train", c.DevFrac, c.TestFrac)
	case !(c.TitleCloserMiss >= 0 && c.TitleCloserMiss <= 1): // NaN fails too
		return fmt.Errorf("synth: title closer miss %v: want a share in [0, 1]", c.TitleCloserMiss)
	}
	for _, t := range c.Tasks {
		if t != SynthTag && t != SynthRate && t != SynthGen {
			return fmt.Errorf("synth: unknown task %q (want %s, %s or %s)", t, SynthTag, SynthRate, SynthGen)
		}
	}
	return nil
}

// Splits in order.
var Splits = []string{"train", "dev", "test"}

// SynthSet is one task's split.
type SynthSet struct {
	Task     *Task
	Split    string
	Examples []Example // Output and Chain are always set; User names the user
	Chains   []Chain   // the gold chains as tagged-chain rows, same order
}

// SynthData is the whole benchmark in memory.
type SynthData struct {
	Config SynthConfig
	Sets   []SynthSet // task-major, splits in Splits order
}

// Set returns one task's split.
func (d *SynthData) Set(task, split string) *SynthSet {
	for i := range d.Sets {
		if d.Sets[i].Task.Name == task && d.Sets[i].Split == split {
			return &d.Sets[i]
		}
	}
	return nil
}

// Vocabulary. Every word the benchmark uses is below, so a tokenizer trained on
// it stays tiny.
var synthTags = []struct {
	name string
	cues []string
}{
	{"comedy", []string{"jokes", "laughs", "pranks"}},
	{"action", []string{"chases", "fights", "explosions"}},
	{"romance", []string{"love", "kisses", "weddings"}},
	{"horror", []string{"ghosts", "screams", "monsters"}},
	{"mystery", []string{"clues", "detectives", "secrets"}},
	{"fantasy", []string{"dragons", "wizards", "magic"}},
	{"drama", []string{"grief", "tears", "families"}},
	{"scifi", []string{"robots", "spaceships", "aliens"}},
}

func synthTagNames() []string {
	out := make([]string, len(synthTags))
	for i, t := range synthTags {
		out[i] = t.name
	}
	return out
}

var (
	synthSettings = []string{"a small town", "the city", "a school", "an island", "a village", "the mountains"}
	rateAspects   = []string{"battery", "screen", "price", "design", "sound", "camera"}
	ratePolarity  = []struct {
		word string
		tone int
	}{{"great", 1}, {"fine", 0}, {"poor", -1}}
	// A post's two nouns come from different lists (who acts, where), so
	// "the first noun" and "the second noun" are also "the actor" and "the
	// place": a small model finds each by what it is, not only by where it
	// is (with one list it never learned to tell them apart and copied
	// neither).
	genActors  = []string{"mayor", "team", "school", "market", "festival", "museum", "storm", "train", "library", "concert"}
	genPlaces  = []string{"river", "bridge", "garden", "park", "hospital", "farm", "station", "stadium", "harbor", "castle"}
	genVerbs   = []string{"opened", "closed", "changed", "moved", "won", "helped"}
	genWhen    = []string{"today", "yesterday", "this week", "last night"}
	genOpeners = []string{"wow", "breaking", "update", "hey", "look", "so"}
	genClosers = []string{"indeed", "folks", "again", "now", "honestly", "finally"}
)

// synthUser is a user's latent preferences: the answers follow from them, and
// only the profile shows them.
type synthUser struct {
	key     string
	rank    []int // tag preference order: rank[0] is the favourite tag
	base    int   // rating generosity: score = clamp(base + tone, 1, 5)
	opener  int   // title style: opener word, closer word, noun order
	closer  int
	reverse bool
}

func (u *synthUser) prefers(a, b int) int {
	for _, t := range u.rank {
		if t == a || t == b {
			return t
		}
	}
	return a
}

// Synth builds the benchmark in memory, deterministically from cfg.Seed.
func Synth(cfg SynthConfig) (*SynthData, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	users := make([]synthUser, cfg.Users)
	for i := range users {
		r := rand.New(rand.NewPCG(cfg.Seed, uint64(i)<<8))
		users[i] = synthUser{key: fmt.Sprintf("u%05d", i), rank: r.Perm(len(synthTags)), base: 2 + r.IntN(3),
			opener: r.IntN(len(genOpeners)), closer: r.IntN(len(genClosers)), reverse: r.IntN(2) == 1}
	}
	order := rand.New(rand.NewPCG(cfg.Seed, 0xfeed)).Perm(cfg.Users)
	nDev := max(1, int(float64(cfg.Users)*cfg.DevFrac+0.5))
	nTest := max(1, int(float64(cfg.Users)*cfg.TestFrac+0.5))
	splitOf := make([]string, cfg.Users)
	for k, u := range order {
		switch {
		case k < nTest:
			splitOf[u] = "test"
		case k < nTest+nDev:
			splitOf[u] = "dev"
		default:
			splitOf[u] = "train"
		}
	}
	d := &SynthData{Config: cfg}
	for ti, name := range cfg.Tasks {
		t, _ := ParseTask(name)
		sets := map[string]*SynthSet{}
		for _, s := range Splits {
			sets[s] = &SynthSet{Task: t, Split: s}
		}
		for ui := range users {
			u := &users[ui]
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(ui)<<8|uint64(ti+1)))
			set := sets[splitOf[ui]]
			profile := synthProfile(t.Name, u, r, cfg.ProfileMin+r.IntN(cfg.ProfileMax-cfg.ProfileMin+1))
			// The teacher's misses have their own stream: r draws the data.
			teacher := rand.New(rand.NewPCG(cfg.Seed^0x7eac4e4, uint64(ui)<<8|uint64(ti+1)))
			for q := 0; q < cfg.QueriesPerUser; q++ {
				e := Example{ID: fmt.Sprintf("%s-%s-%d", t.Name, u.key, q), Task: t.Name, Split: set.Split,
					Scheme: "synth", Profile: profile, HasOutput: true, User: u.key}
				miss := t.Name == SynthGen && teacher.Float64() < cfg.TitleCloserMiss
				var answer string
				e.Input, e.Output, answer, e.Chain = synthQuery(t, u, profile, r, miss)
				set.Examples = append(set.Examples, e)
				set.Chains = append(set.Chains, chainRow(&e, answer))
			}
		}
		for _, s := range Splits {
			d.Sets = append(d.Sets, *sets[s])
		}
	}
	return d, nil
}

func synthProfile(task string, u *synthUser, r *rand.Rand, n int) []ProfileItem {
	for {
		items := drawProfile(task, u, r, n)
		// The favourite tag must be the profile's strict mode, so the gold chain's
		// "the user favours X" is what the profile shows.
		if fav, c := modeTag(items); task != SynthTag || (fav == synthTags[u.rank[0]].name && strictMode(items, c)) {
			return items
		}
	}
}

func strictMode(items []ProfileItem, top int) bool {
	counts := map[string]int{}
	for _, p := range items {
		counts[p.Fields[1]]++
	}
	n := 0
	for _, c := range counts {
		if c == top {
			n++
		}
	}
	return n == 1
}

func drawProfile(task string, u *synthUser, r *rand.Rand, n int) []ProfileItem {
	items := make([]ProfileItem, n)
	// No dates: like LaMP-2 and LaMP-3 profiles, and digits cost a token
	// each (a date was 11 of a profile item's ~25 tokens).
	for i := range items {
		p := &items[i]
		p.ID = fmt.Sprintf("%s-p%d", u.key, i)
		switch task {
		case SynthTag:
			// Most past movies feature the favourite, so it stands out.
			a, b := twoTags(r, u.rank[0], r.Float64() < 0.7)
			p.Fields = []string{tagDescription(r, a, b), synthTags[u.prefers(a, b)].name}
		case SynthRate:
			text, tone := review(r)
			p.Fields = []string{text, strconv.Itoa(clampScore(u.base + tone))}
		case SynthGen:
			text, n1, v, n2 := post(r)
			p.Fields = []string{text, u.title(n1, v, n2)}
		}
	}
	return items
}

// twoTags draws two distinct tags; withFav forces fav to be one of them. The
// order is random so position tells nothing.
func twoTags(r *rand.Rand, fav int, withFav bool) (int, int) {
	a := fav
	if !withFav {
		for a = r.IntN(len(synthTags)); a == fav; a = r.IntN(len(synthTags)) {
		}
	}
	b := a
	for b == a || (!withFav && b == fav) {
		b = r.IntN(len(synthTags))
	}
	if r.IntN(2) == 1 {
		a, b = b, a
	}
	return a, b
}

func tagDescription(r *rand.Rand, a, b int) string {
	ca, cb := synthTags[a].cues[r.IntN(3)], synthTags[b].cues[r.IntN(3)]
	return fmt.Sprintf("a film about %s and %s in %s", ca, cb, synthSettings[r.IntN(len(synthSettings))])
}

func review(r *rand.Rand) (string, int) {
	i := r.IntN(len(rateAspects))
	j := (i + 1 + r.IntN(len(rateAspects)-1)) % len(rateAspects)
	p, q := ratePolarity[r.IntN(3)], ratePolarity[r.IntN(3)]
	return fmt.Sprintf("the %s is %s and the %s is %s", rateAspects[i], p.word, rateAspects[j], q.word), p.tone + q.tone
}

func clampScore(s int) int { return min(5, max(1, s)) }

func post(r *rand.Rand) (text, n1, verb, n2 string) {
	n1, n2, verb = genActors[r.IntN(len(genActors))], genPlaces[r.IntN(len(genPlaces))], genVerbs[r.IntN(len(genVerbs))]
	return fmt.Sprintf("%s the %s %s near the %s", genWhen[r.IntN(len(genWhen))], n1, verb, n2), n1, verb, n2
}

func (u *synthUser) title(n1, verb, n2 string) string {
	if u.reverse {
		n1, n2 = n2, n1
	}
	return strings.Join([]string{genOpeners[u.opener], n1, verb, n2, genClosers[u.closer]}, " ")
}

// synthQuery draws one question for the user and writes its gold, and the
// teacher's chain and answer: the gold unless the teacher misses a title's
// closing word. The chain recalls profile items in the order a prompt shows
// them when it ranks the whole profile by BM25 against the input (the default
// retrieval), so "the first items" of a chain are the first items the model reads.
func synthQuery(t *Task, u *synthUser, profile []ProfileItem, r *rand.Rand, miss bool) (input, output, answer, chain string) {
	var steps [][2]string
	shown := func(input string) []ProfileItem {
		order := TopKBM25(t, &Example{Input: input, Profile: profile}, len(profile))
		out := make([]ProfileItem, len(order))
		for i, k := range order {
			out[i] = profile[k]
		}
		return out
	}
	switch t.Name {
	case SynthTag:
		// The favourite is always a candidate: reading the profile decides it.
		a, b := twoTags(r, u.rank[0], true)
		desc := tagDescription(r, a, b)
		input = "Which tag does this user give the movie? description: " + desc
		output = synthTags[u.prefers(a, b)].name
		fav, count := modeTag(profile)
		steps = [][2]string{
			{"understand_task", "choose the tag this user gives the movie"},
			{"recall_history", fmt.Sprintf("the user tagged %d of %d past movies %s", count, len(profile), fav)},
			{"infer_preference", "the user favours " + fav},
			{"analyze_input", fmt.Sprintf("this movie has %s and %s", synthTags[a].name, synthTags[b].name)},
			{"match_preference", output + " matches the user's favourite"},
			{"conclude", output},
		}
	case SynthRate:
		text, tone := review(r)
		input = "What score from 1 to 5 does this user give the review? review: " + text
		output = strconv.Itoa(clampScore(u.base + tone))
		var recall []string
		for _, p := range shown(input)[:3] {
			recall = append(recall, fmt.Sprintf("tone %+d gave %s", reviewTone(p.Fields[0]), p.Fields[1]))
		}
		steps = [][2]string{
			{"understand_task", "predict the score this user gives the review"},
			{"recall_history", strings.Join(recall, ", ")},
			{"identify_patterns", fmt.Sprintf("the user scores tone plus %d", u.base)},
			{"infer_preference", fmt.Sprintf("the user's base score is %d", u.base)},
			{"analyze_input", fmt.Sprintf("this review has tone %+d", tone)},
			{"conclude", fmt.Sprintf("%d %+d gives %s", u.base, tone, output)},
		}
	case SynthGen:
		text, n1, verb, n2 := post(r)
		input = "Write a title for this post: " + text
		output = u.title(n1, verb, n2)
		order := "keeps the nouns in order"
		if u.reverse {
			order = "swaps the two nouns"
		}
		opener, closer := genOpeners[u.opener], genClosers[u.closer]
		recall, style := fmt.Sprintf("past titles start with %s and end with %s", opener, closer), opener+" "+closer
		answer = output
		if miss { // the teacher reads the opening word only
			recall, style, answer = "past titles start with "+opener, opener, strings.TrimSuffix(output, " "+closer)
		}
		// The post's words are named by their role: the input comes last in
		// the prompt, so each is the latest word of its kind (actor, verb,
		// place) before the chain. Quoting the post whole asked the model to
		// find the input among the profile's posts of the same shape. Neither
		// is learnt by the demo's model yet: it copies no content word
		// (docs/benchmark.md).
		steps = [][2]string{
			{"understand_task", "write a title for the post in the user's style"},
			{"recall_history", recall},
			{"identify_patterns", "the user " + order},
			{"infer_preference", "style " + style},
			{"analyze_input", fmt.Sprintf("actor %s, verb %s, place %s", n1, verb, n2)},
			{"draft", answer},
			{"verify", "the draft follows the user's style"},
			{"conclude", answer},
		}
	}
	if answer == "" {
		answer = output
	}
	// A space opens every step and the answer: a word then gets the same
	// token as in the prompt (byte-level BPE words carry their leading space),
	// so copying from the profile is copying a token.
	var b strings.Builder
	b.WriteString("<think>\n")
	for _, s := range steps {
		fmt.Fprintf(&b, "<%s> %s</%s>\n", s[0], s[1], s[0])
	}
	fmt.Fprintf(&b, "</think>\n<answer> %s</answer>", answer)
	return input, output, answer, b.String()
}

// modeTag is the profile's most frequent tag (ties: the earliest to reach it).
func modeTag(profile []ProfileItem) (string, int) {
	counts := map[string]int{}
	best, bestN := "", 0
	for _, p := range profile {
		counts[p.Fields[1]]++
		if counts[p.Fields[1]] > bestN {
			best, bestN = p.Fields[1], counts[p.Fields[1]]
		}
	}
	return best, bestN
}

// reviewTone reads a review's tone back from its words.
func reviewTone(text string) int {
	tone := 0
	for _, w := range strings.Fields(text) {
		for _, p := range ratePolarity {
			if w == p.word {
				tone += p.tone
			}
		}
	}
	return tone
}

// ParseChainSpans finds the tagged steps of a chain: every <tag>text</tag> inside
// <think>, with byte offsets of text.
func ParseChainSpans(chain string) []Span {
	var spans []Span
	pos := 0
	for {
		i := strings.IndexByte(chain[pos:], '<')
		if i < 0 {
			return spans
		}
		open := pos + i
		j := strings.IndexByte(chain[open:], '>')
		if j < 0 {
			return spans
		}
		tag := chain[open+1 : open+j]
		start := open + j + 1
		if tag == "" || tag[0] == '/' || tag == "think" || tag == "answer" {
			pos = start
			continue
		}
		k := strings.Index(chain[start:], "</"+tag+">")
		if k < 0 {
			pos = start
			continue
		}
		spans = append(spans, Span{Tag: tag, Text: chain[start : start+k], Start: int32(start), End: int32(start + k)})
		pos = start + k + len(tag) + 3
	}
}

func chainRow(e *Example, answer string) Chain {
	return Chain{ID: e.ID, Prompt: []Message{{Role: "user", Content: e.Input}}, Chain: e.Chain,
		Spans: ParseChainSpans(e.Chain), Answer: answer, Gold: e.Output, HasGold: true, Teacher: "synth",
		Verdicts: []Verdict{{Name: "answer_correct", Pass: answer == e.Output}, {Name: "tags_valid", Pass: true}}, Keep: true}
}

// Write stores the benchmark under dir: for each task, DIR/TASK/{split}.arrow
// (examples, with gold chains), DIR/TASK/{split}_chains.arrow (tagged chains),
// and LaMP's own {split}_questions.json and {split}_outputs.json (golds carry
// "chain"). Each file appears atomically.
func (d *SynthData) Write(dir string) error {
	for i := range d.Sets {
		s := &d.Sets[i]
		base := filepath.Join(dir, s.Task.Name)
		if err := os.MkdirAll(base, 0o755); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		arrowPath := filepath.Join(base, s.Split+".arrow")
		if err := WriteRows(arrowPath, s.Examples, func(p string) (*Writer[Example], error) { return CreateExamples(p, s.Task) }); err != nil {
			return err
		}
		if err := WriteRows(filepath.Join(base, s.Split+"_chains.arrow"), s.Chains, CreateChains); err != nil {
			return err
		}
		if _, err := ExportLaMP(arrowPath, filepath.Join(base, s.Split+"_questions.json"), filepath.Join(base, s.Split+"_outputs.json")); err != nil {
			return err
		}
	}
	return nil
}

// --- baselines: what the profile is worth ---

// BlindBaseline is the best profile-blind rule: it learns from train the most
// frequent answer given everything the input shows (the two candidate tags; the
// review's tone; the post's nouns and verb with the most common style), and
// never looks at the profile. It returns one prediction per eval example;
// scoring them is the evaluator's business (pipeline's task metrics).
func BlindBaseline(train, eval *SynthSet) ([]string, error) {
	if train.Task != eval.Task {
		return nil, errors.New("baseline: train and eval tasks differ")
	}
	switch train.Task.Name {
	case SynthTag:
		freq := map[string]int{}
		for _, e := range train.Examples {
			freq[e.Output]++
		}
		return predictWith(eval, func(e *Example) string {
			a, b := inputTags(e.Input)
			if freq[synthTags[b].name] > freq[synthTags[a].name] {
				return synthTags[b].name
			}
			return synthTags[a].name
		}), nil
	case SynthRate:
		byTone := map[int]map[string]int{}
		for _, e := range train.Examples {
			t := reviewTone(e.Input)
			if byTone[t] == nil {
				byTone[t] = map[string]int{}
			}
			byTone[t][e.Output]++
		}
		return predictWith(eval, func(e *Example) string { return argmax(byTone[reviewTone(e.Input)], "3") }), nil
	case SynthGen:
		op, cl, rev := map[string]int{}, map[string]int{}, map[string]int{}
		for _, e := range train.Examples {
			w := strings.Fields(e.Output)
			op[w[0]]++
			cl[w[len(w)-1]]++
			_, n1, _, _ := parsePost(e.Input)
			rev[strconv.FormatBool(w[1] != n1)]++
		}
		style := synthUser{opener: slices.Index(genOpeners, argmax(op, "")), closer: slices.Index(genClosers, argmax(cl, "")),
			reverse: argmax(rev, "false") == "true"}
		return predictWith(eval, func(e *Example) string {
			_, n1, v, n2 := parsePost(e.Input)
			return style.title(n1, v, n2)
		}), nil
	}
	return nil, fmt.Errorf("baseline: %s is not a synthetic task", train.Task.Name)
}

// ProfileBaseline is a simple rule that reads the profile: the candidate tag
// the user chose most often; the base score that explains the past scores; the
// opener, closer and noun order of the past titles. One prediction per example.
func ProfileBaseline(eval *SynthSet) ([]string, error) {
	switch eval.Task.Name {
	case SynthTag:
		return predictWith(eval, func(e *Example) string {
			a, b := inputTags(e.Input)
			counts := map[string]int{}
			for _, p := range e.Profile {
				counts[p.Fields[1]]++
			}
			if counts[synthTags[b].name] > counts[synthTags[a].name] {
				return synthTags[b].name
			}
			return synthTags[a].name
		}), nil
	case SynthRate:
		return predictWith(eval, func(e *Example) string {
			best, bestFit := 3, -1
			for base := 1; base <= 5; base++ {
				fit := 0
				for _, p := range e.Profile {
					if strconv.Itoa(clampScore(base+reviewTone(p.Fields[0]))) == p.Fields[1] {
						fit++
					}
				}
				if fit > bestFit {
					best, bestFit = base, fit
				}
			}
			return strconv.Itoa(clampScore(best + reviewTone(e.Input)))
		}), nil
	case SynthGen:
		return predictWith(eval, func(e *Example) string {
			op, cl, rev := map[string]int{}, map[string]int{}, map[string]int{}
			for _, p := range e.Profile {
				w := strings.Fields(p.Fields[1])
				_, n1, _, _ := parsePost(p.Fields[0])
				op[w[0]]++
				cl[w[len(w)-1]]++
				rev[strconv.FormatBool(w[1] != n1)]++
			}
			style := synthUser{opener: slices.Index(genOpeners, argmax(op, "")), closer: slices.Index(genClosers, argmax(cl, "")),
				reverse: argmax(rev, "false") == "true"}
			_, n1, v, n2 := parsePost(e.Input)
			return style.title(n1, v, n2)
		}), nil
	}
	return nil, fmt.Errorf("baseline: %s is not a synthetic task", eval.Task.Name)
}

func predictWith(set *SynthSet, predict func(*Example) string) []string {
	out := make([]string, len(set.Examples))
	for i := range set.Examples {
		out[i] = predict(&set.Examples[i])
	}
	return out
}

func argmax(m map[string]int, dflt string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	best, bestN := dflt, -1
	for _, k := range keys {
		if m[k] > bestN {
			best, bestN = k, m[k]
		}
	}
	return best
}

// inputTags reads the two candidate tags from a tagging input's cue words.
func inputTags(input string) (int, int) {
	var found []int
	for _, w := range strings.Fields(input) {
		for t, tg := range synthTags {
			if slices.Contains(tg.cues, w) {
				found = append(found, t)
			}
		}
	}
	if len(found) < 2 {
		return 0, 0
	}
	return found[0], found[1]
}

// parsePost reads "WHEN the N1 VERB near the N2" back (after any "…: " prefix).
func parsePost(s string) (when, n1, verb, n2 string) {
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	w := strings.Fields(s)
	if len(w) < 6 {
		return
	}
	k := len(w)
	return strings.Join(w[:k-6], " "), w[k-5], w[k-4], w[k-1]
}

// Texts lists every text of a split across tasks (inputs, profile texts,
// outputs, chains): the corpus a tokenizer for the benchmark is trained on.
func (d *SynthData) Texts(split string) []string {
	var out []string
	for _, s := range d.Sets {
		if s.Split != split {
			continue
		}
		for _, e := range s.Examples {
			out = append(out, e.Input, e.Output, e.Chain)
			for _, p := range e.Profile {
				out = append(out, p.Fields...)
				out = append(out, p.Date)
			}
		}
	}
	return out
}

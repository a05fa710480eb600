package train

// Progress is one report of long work: a training step, a batch of teacher
// chains, a stage starting. It is the one shape every long job of tagpr
// reports through (SFT, RL, PRMU, chains): library code never prints; the
// caller turns reports into bars or log lines.
type Progress struct {
	Task  string // what is running: "sft", "rl guided", "prmu", "chains"
	Step  int    // units done so far (steps, examples); 0 with a Note before any
	Total int    // units in all; 0 when unknown
	// Metrics are the step's headline figures by name (loss, lr, reward…),
	// named as TRL and the Hugging Face Trainer log them.
	Metrics map[string]float64
	// Note is a one-line message ("resuming after step 40 of 250"), set on
	// reports that are not a step.
	Note string
	// Warning, on a step's report, is what the step revealed that does not
	// stop the run (a skipped update and why, a loss stuck at chance level).
	Warning string
}

// ProgressFunc receives reports; nil ignores them.
type ProgressFunc func(Progress)

// Report calls f when it is set.
func (f ProgressFunc) Report(p Progress) {
	if f != nil {
		f(p)
	}
}

// Metered is a step record that names its headline figures.
type Metered interface {
	Metrics() map[string]float64
}

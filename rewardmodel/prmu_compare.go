package rewardmodel

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// SwapProfiles returns the pairs with each profile replaced by the next
// pair's (cyclically) whose User differs: the profile-swap test. A PRMU
// that reads profiles ranks fewer swapped pairs right; one that ignores
// them ranks as many. Pairs without a User count as one user each.
func SwapProfiles(pairs []PRMUPair) ([]PRMUPair, error) {
	out := make([]PRMUPair, len(pairs))
	for i := range pairs {
		out[i] = pairs[i]
		found := false
		for d := 1; d < len(pairs) && !found; d++ {
			o := pairs[(i+d)%len(pairs)]
			if o.User != pairs[i].User || o.User == "" {
				out[i].Profile, out[i].User, found = o.Profile, o.User, true
			}
		}
		if !found {
			return nil, fmt.Errorf("swap profiles: every pair has user %q: nothing to swap with", pairs[i].User)
		}
	}
	return out, nil
}

// SwapAccuracy is a PRMU's pair accuracy on one task's pairs with each
// user's own profile and with another user's.
type SwapAccuracy struct {
	Task    string
	Pairs   int
	Own     float64
	Swapped float64
}

// PRMUComparison is one PRMU recipe's result on the dev sets.
type PRMUComparison struct {
	Name         string
	Steps        int // head steps
	LoRASteps    int // then joint encoder LoRA and head steps
	TrainSeconds float64
	Tasks        []SwapAccuracy
}

// NamedPRMURecipe is a recipe with the name a comparison shows.
type NamedPRMURecipe struct {
	Name   string
	Recipe PRMURecipe
}

// ComparePRMUs trains each recipe on the train sets and measures, on every
// dev set, the pair accuracy with own and with swapped profiles. log, when
// set, hears of each recipe as it finishes.
func ComparePRMUs(ctx context.Context, trainSets, devSets []ExampleSet, recipes []NamedPRMURecipe, log func(PRMUComparison)) ([]PRMUComparison, error) {
	var out []PRMUComparison
	for _, nr := range recipes {
		r := nr.Recipe
		p, res, _, err := TrainPRMUOnSets(ctx, trainSets, devSets, r)
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", nr.Name, err)
		}
		c := PRMUComparison{Name: nr.Name, Steps: p.Info.Steps, LoRASteps: p.Info.LoRASteps, TrainSeconds: res.Duration.Seconds()}
		for i, s := range devSets {
			var a SwapAccuracy
			if a, err = swapAccuracy(ctx, p, s, r.TopK, r.Train.Seed+uint64(i)); err != nil {
				break
			}
			c.Tasks = append(c.Tasks, a)
		}
		p.Close()
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", nr.Name, err)
		}
		if log != nil {
			log(c)
		}
		out = append(out, c)
	}
	return out, nil
}

// swapAccuracy measures one dev set the way TrainPRMUOnSets does, then with
// swapped profiles.
func swapAccuracy(ctx context.Context, p *PRMU, s ExampleSet, topK int, seed uint64) (SwapAccuracy, error) {
	a := SwapAccuracy{Task: s.Task.Name}
	pairs, err := PRMUPairs(s.Task, s.Examples, topK, seed)
	if err != nil {
		return a, err
	}
	swapped, err := SwapProfiles(pairs)
	if err != nil {
		return a, err
	}
	a.Pairs = len(pairs)
	if a.Own, err = p.PairAccuracy(ctx, pairs); err != nil {
		return a, err
	}
	a.Swapped, err = p.PairAccuracy(ctx, swapped)
	return a, err
}

// WriteComparison prints the comparison as a Markdown table: per task the
// dev pair accuracy with own / swapped profiles.
func WriteComparison(w io.Writer, rows []PRMUComparison) error {
	if len(rows) == 0 {
		return fmt.Errorf("write comparison: no rows")
	}
	var b strings.Builder
	b.WriteString("| PRMU | steps | train s |")
	sep := "|---|---:|---:|"
	for _, t := range rows[0].Tasks {
		fmt.Fprintf(&b, " %s own / swapped (pairs) |", t.Task)
		sep += "---:|"
	}
	b.WriteString("\n" + sep + "\n")
	for _, r := range rows {
		steps := fmt.Sprint(r.Steps)
		if r.LoRASteps > 0 {
			steps += fmt.Sprintf(" + %d LoRA", r.LoRASteps)
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f |", r.Name, steps, r.TrainSeconds)
		for _, t := range r.Tasks {
			fmt.Fprintf(&b, " %.3f / %.3f (%d) |", t.Own, t.Swapped, t.Pairs)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

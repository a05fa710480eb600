package train

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tagpr/tagpr/onnx/lm"
)

// PatternMatch is what one user pattern selected.
type PatternMatch struct {
	Pattern string
	// Modules lists the modules it selected whole; Params the single
	// weights it selected (weights named outside any module).
	Modules []string
	Params  []string
}

func (m PatternMatch) String() string {
	all := append(append([]string{}, m.Modules...), m.Params...)
	return fmt.Sprintf("%q → %s", m.Pattern, strings.Join(all, ", "))
}

// matchesModule: the pattern names this module or weight. Besides the
// globs and re: expressions of MatchName, a plain name (no * ? or re:)
// matches a name equal to it or ending in "." + it, as PEFT's
// target_modules do: q_proj matches model.layers.0.self_attn.q_proj.
func matchesModule(pattern, name string) bool {
	if MatchName(name, []string{pattern}) {
		return true
	}
	if strings.HasPrefix(pattern, "re:") || strings.ContainsAny(pattern, "*?") {
		return false
	}
	return strings.HasSuffix(name, "."+pattern)
}

// weightGroups groups weight names by module (lm.ModuleOf).
func weightGroups(weights []string) (map[string][]string, []string) {
	groups := map[string][]string{}
	var order []string
	for _, w := range weights {
		m := lm.ModuleOf(w)
		if _, ok := groups[m]; !ok {
			order = append(order, m)
		}
		groups[m] = append(groups[m], w)
	}
	return groups, order
}

// examples lists a few names for error messages.
func examples(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + fmt.Sprintf(", … (%d in all)", len(names))
}

// ResolveTrainable turns --trainable patterns into weight names. A pattern
// selects a module whole when it matches the module's name
// (model.layers.0.self_attn.q_proj, or its last part q_proj) and single
// weights when it matches their names (model.layers.0.*). Training part of
// a module (its bias but not its weight: usually a pattern that does not
// say what its author meant) is an error naming what was and was not
// matched, and so is a pattern that matches nothing. No patterns select
// every candidate.
func ResolveTrainable(candidates, patterns []string) ([]string, []PatternMatch, error) {
	if err := ValidatePatterns(patterns); err != nil {
		return nil, nil, err
	}
	if len(patterns) == 0 {
		return candidates, nil, nil
	}
	groups, order := weightGroups(candidates)
	chosen := map[string]bool{}
	by := map[string][]string{} // module → the patterns that touched it
	var matches []PatternMatch
	for _, p := range patterns {
		pm := PatternMatch{Pattern: p}
		for _, mod := range order {
			ws := groups[mod]
			if matchesModule(p, mod) {
				for _, w := range ws {
					chosen[w] = true
				}
				pm.Modules = append(pm.Modules, mod)
				by[mod] = append(by[mod], p)
				continue
			}
			var hit []string
			for _, w := range ws {
				if matchesModule(p, w) {
					hit = append(hit, w)
				}
			}
			if len(hit) == 0 {
				continue
			}
			for _, w := range hit {
				chosen[w] = true
			}
			by[mod] = append(by[mod], p)
			if len(hit) == len(ws) && mod != ws[0] {
				pm.Modules = append(pm.Modules, mod)
			} else {
				pm.Params = append(pm.Params, hit...)
			}
		}
		if len(pm.Modules)+len(pm.Params) == 0 {
			return nil, nil, fmt.Errorf("--trainable %q matches no weight; modules are named like %s", p, examples(order, 6))
		}
		matches = append(matches, pm)
	}
	for _, mod := range order {
		var in, out []string
		for _, w := range groups[mod] {
			if chosen[w] {
				in = append(in, w)
			} else {
				out = append(out, w)
			}
		}
		if len(in) > 0 && len(out) > 0 {
			return nil, nil, fmt.Errorf("--trainable %s selects part of module %s: %s but not %s; select whole modules (e.g. %q)",
				quoteAll(by[mod]), mod, strings.Join(in, ", "), strings.Join(out, ", "), mod)
		}
	}
	var out []string
	for _, w := range candidates {
		if chosen[w] {
			out = append(out, w)
		}
	}
	return out, matches, nil
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

// ResolveLoRATargets picks the linear layers to adapt. linear maps each
// adaptable weight (a MatMul/Gemm weight) to its module name; others lists
// every other weight (for error messages). With no patterns it picks every
// linear layer but the head (head: the module whose output is the logits),
// as PEFT's all-linear does. A pattern matches module names (see
// ResolveTrainable); one that matches no linear layer is an error naming
// what it matched instead (other modules, or single weights).
func ResolveLoRATargets(linear map[string]string, others []string, head string, patterns []string) ([]string, []PatternMatch, error) {
	if err := ValidatePatterns(patterns); err != nil {
		return nil, nil, err
	}
	var mods []string
	weightOf := map[string]string{}
	for w, mod := range linear {
		mods = append(mods, mod)
		weightOf[mod] = w
	}
	sort.Strings(mods)
	if len(patterns) == 0 {
		var out []string
		for _, mod := range mods {
			if mod != head {
				out = append(out, weightOf[mod])
			}
		}
		return out, []PatternMatch{{Pattern: "(default: every linear layer but the lm head)", Modules: without(mods, head)}}, nil
	}
	_, otherMods := weightGroups(others)
	chosen := map[string]bool{}
	var matches []PatternMatch
	for _, p := range patterns {
		pm := PatternMatch{Pattern: p}
		for _, mod := range mods {
			if matchesModule(p, mod) {
				pm.Modules = append(pm.Modules, mod)
				chosen[mod] = true
			}
		}
		if len(pm.Modules) == 0 {
			return nil, nil, loraMiss(p, linear, others, otherMods, mods, head)
		}
		matches = append(matches, pm)
	}
	var out []string
	for _, mod := range mods {
		if chosen[mod] {
			out = append(out, weightOf[mod])
		}
	}
	return out, matches, nil
}

// loraMiss explains a target pattern that selects no linear layer: what
// it matched instead (other modules, or weights rather than modules).
func loraMiss(p string, linear map[string]string, others, otherMods, mods []string, head string) error {
	if head == "" {
		head = "lm_head" // no linear layer gives the logits: the head reads the embedding
	}
	if matchesModule(p, head) && !slices.Contains(mods, head) {
		return &TargetsError{Pattern: p, Reason: fmt.Sprintf(": the lm head (%s) has no weight of its own (it is tied to the input embedding: one weight, which LoRA does not adapt); adapt linear layers such as %s", head, examples(mods, 4))}
	}
	var elsewhere, weights []string
	hit := map[string]bool{}
	for _, mod := range otherMods {
		if matchesModule(p, mod) {
			elsewhere = append(elsewhere, mod)
			hit[mod] = true
		}
	}
	for _, w := range others {
		if matchesModule(p, w) && !hit[lm.ModuleOf(w)] {
			elsewhere = append(elsewhere, w)
		}
	}
	for _, w := range keys(linear) {
		if matchesModule(p, w) {
			weights = append(weights, w)
		}
	}
	switch {
	case len(weights) > 0:
		return &TargetsError{Pattern: p, Reason: fmt.Sprintf(" matches the weights %s, not modules; name the linear layers themselves (e.g. %q)", examples(weights, 4), linear[weights[0]])}
	case len(elsewhere) > 0:
		return &TargetsError{Pattern: p, Reason: fmt.Sprintf(" matches no linear layer, only %s; LoRA adapts linear layers such as %s", examples(elsewhere, 6), examples(mods, 4))}
	}
	return &TargetsError{Pattern: p, Reason: fmt.Sprintf(" matches nothing; linear layers are named like %s", examples(mods, 6))}
}

// TargetsError is a LoRA target pattern that selects no linear layer, and
// what it matched instead. Key names the setting the pattern came from in
// the message (default --lora-targets, train lm's flag): a caller with
// another name for it (a config key) sets it.
type TargetsError struct {
	Key, Pattern string
	Reason       string // from the quoted pattern on: ": …" or " matches …"
}

func (e *TargetsError) Error() string {
	key := e.Key
	if key == "" {
		key = "--lora-targets"
	}
	return fmt.Sprintf("%s %q%s", key, e.Pattern, e.Reason)
}

func without(s []string, x string) []string {
	var out []string
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

package pipeline

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tagpr/tagpr/rewardmodel"
)

// LoadTaxonomy reads a tag taxonomy file: a YAML (or JSON) list of
// {name, description, required, order}, in the order tags are listed to
// the teacher. Unknown keys and wrong types are refused naming the file;
// "" is the built-in default.
func LoadTaxonomy(path string) (rewardmodel.Taxonomy, error) {
	if path == "" {
		return rewardmodel.DefaultTaxonomy(), nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("taxonomy: %w", err)
	}
	var tags []struct {
		Name        string `yaml:"name"`
		Description string `yaml:"description"`
		Required    bool   `yaml:"required"`
		Order       int    `yaml:"order"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&tags); err != nil {
		return nil, fmt.Errorf("taxonomy %s: want a list of {name, description, required, order}: %w", path, err)
	}
	if len(tags) == 0 {
		return nil, fmt.Errorf("taxonomy %s: no tags", path)
	}
	tx := make(rewardmodel.Taxonomy, len(tags))
	for i, t := range tags {
		if t.Order < 0 {
			return nil, fmt.Errorf("taxonomy %s: tag %q: order %d, want ≥ 0", path, t.Name, t.Order)
		}
		tx[i] = rewardmodel.Tag{Name: t.Name, Description: t.Description, Required: t.Required, Order: t.Order}
	}
	if err := tx.Validate(); err != nil {
		return nil, fmt.Errorf("taxonomy %s: %w", path, err)
	}
	return tx, nil
}

// TagGuide tells a teacher the reasoning format: every tag with what its
// step does, which are required and in which order, and the answer element.
func TagGuide(tx rewardmodel.Taxonomy) string {
	var b strings.Builder
	b.WriteString("Write your reasoning as steps inside <think>…</think>, each step wrapped in one of these tags:\n")
	for _, t := range tx {
		fmt.Fprintf(&b, "<%s>: %s", t.Name, t.Description)
		if t.Required {
			b.WriteString(" (required)")
		}
		b.WriteString("\n")
	}
	// The order R_tag checks: required tags by their order values (a tag
	// with order 0 has none), not the listing order.
	if ordered := tx.Ordered(); len(ordered) > 1 {
		b.WriteString("Required steps come in this order: <" + strings.Join(ordered, ">, <") + ">.\n")
	}
	b.WriteString("Use no other tags. After </think>, give only the final answer inside <answer>…</answer>, in the task's exact label format.")
	return b.String()
}

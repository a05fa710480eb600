package pipeline

import (
	"context"

	"github.com/tagpr/tagpr/datasets"
)

// Teacher writes reasoning chains (and, for the teacher labeller, step
// labels): one completion per chat prompt. Implementations batch as they
// like; the result has one text per prompt, in order.
type Teacher interface {
	// Name is the provenance recorded with every chain, e.g.
	// "openai:gpt-4o@https://api.example.com/v1" or "local:/models/policy".
	Name() string
	Complete(ctx context.Context, prompts [][]datasets.Message) ([]string, error)
}

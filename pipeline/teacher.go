package pipeline

import (
	"context"

	"github.com/tagpr/tagpr/datasets"
)

// Teacher writes reasoning chains (and, for the teacher labeller, step
// labels): one completion per chat prompt. Implementations batch as they
// like; the result has one completion per prompt, in order.
type Teacher interface {
	// Name is the provenance recorded with every chain, e.g.
	// "openai:gpt-4o@https://api.example.com/v1" or "local:/models/policy".
	Name() string
	Complete(ctx context.Context, prompts [][]datasets.Message) ([]Completion, error)
}

// Completion is a teacher's reply to one prompt.
type Completion struct {
	Text string
	// Cut says why the reply is not whole ("" = the teacher ended it): the
	// token budget ran out, a content filter stopped it, or the model
	// refused. A cut chain is recorded, never kept: its answer may be cut too.
	Cut string
}

// PartialError is a Complete error after which some replies are whole:
// Done[i] says the returned Completions hold prompt i's (the chains stage
// keeps those, so a rerun does not pay for them again).
type PartialError struct {
	Err  error
	Done []bool
}

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// cutAtBudget is a Completion's Cut when the token budget ran out.
const cutAtBudget = "the teacher's reply was cut at its token budget (finish_reason length): raise teacher.max_tokens in the run config, or --max-tokens"

package tokenize

import (
	"encoding/json"
	"errors"
)

// ParseNormalizerForTest parses the normalizer component raw; the function
// it returns runs it on s with alignment: the output and, for each of its
// bytes, the input byte range it came from. It fails when normalizing
// without alignment gives another output.
func ParseNormalizerForTest(raw []byte) (func(s string) (string, [][2]int, error), error) {
	n, err := parseNormalizer(json.RawMessage(raw))
	if err != nil || n == nil {
		return nil, err
	}
	return func(s string) (string, [][2]int, error) {
		out, spans := n.normalize(s, true)
		if spans == nil {
			spans = identitySpans(out)
		}
		res := make([][2]int, len(spans))
		for i, sp := range spans {
			res[i] = [2]int{int(sp.start), int(sp.end)}
		}
		if plain, _ := n.normalize(s, false); plain != out {
			return plain, nil, errors.New("normalize with and without alignment disagree")
		}
		return out, res, nil
	}, nil
}

package tokenize

import (
	"encoding/json"
	"fmt"
)

// postProcessor says which special ids wrap a single sequence when special
// tokens are requested (HF post_processor, single-sequence case).
type postProcessor struct {
	prefixTokens, suffixTokens []string
	prefix, suffix             []int64
}

// resolve looks up the ids of the wrapping tokens once the vocab is known.
func (p *postProcessor) resolve(t *Tokenizer) error {
	if p == nil {
		return nil
	}
	look := func(toks []string, given []int64) ([]int64, error) {
		if given != nil {
			for _, id := range given {
				if id < 0 || id >= int64(len(t.idToToken)) {
					return nil, fmt.Errorf("special id %d not in vocab", id)
				}
			}
			return given, nil
		}
		var out []int64
		for _, s := range toks {
			id, ok := t.vocab[s]
			if !ok {
				return nil, fmt.Errorf("special token %q not in vocab", s)
			}
			out = append(out, int64(id))
		}
		return out, nil
	}
	var err error
	if p.prefix, err = look(p.prefixTokens, p.prefix); err != nil {
		return err
	}
	p.suffix, err = look(p.suffixTokens, p.suffix)
	return err
}

type templatePiece struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID string `json:"id"`
	} `json:"Sequence"`
}

func parsePostProcessor(raw json.RawMessage) (*postProcessor, error) {
	typ, err := typeOf(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "", "ByteLevel":
		return &postProcessor{}, nil
	case "BertProcessing", "RobertaProcessing":
		var j struct {
			Sep []json.RawMessage `json:"sep"`
			Cls []json.RawMessage `json:"cls"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %w", typ, err)
		}
		tok := func(pair []json.RawMessage, name string) (string, error) {
			var s string
			if len(pair) != 2 || json.Unmarshal(pair[0], &s) != nil {
				return "", fmt.Errorf("%s: %s must be [token, id]", typ, name)
			}
			return s, nil
		}
		cls, err := tok(j.Cls, "cls")
		if err != nil {
			return nil, err
		}
		sep, err := tok(j.Sep, "sep")
		if err != nil {
			return nil, err
		}
		return &postProcessor{prefixTokens: []string{cls}, suffixTokens: []string{sep}}, nil
	case "TemplateProcessing":
		var j struct {
			Single        []templatePiece `json:"single"`
			SpecialTokens map[string]struct {
				ID     string   `json:"id"`
				IDs    []int64  `json:"ids"`
				Tokens []string `json:"tokens"`
			} `json:"special_tokens"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("TemplateProcessing: %w", err)
		}
		p := &postProcessor{}
		seen := false
		for i, piece := range j.Single {
			switch {
			case piece.Sequence != nil:
				if seen {
					return nil, fmt.Errorf("TemplateProcessing: single has two sequences")
				}
				seen = true
			case piece.SpecialToken != nil:
				st, ok := j.SpecialTokens[piece.SpecialToken.ID]
				if !ok {
					return nil, fmt.Errorf("TemplateProcessing: single[%d] names special token %q missing from special_tokens", i, piece.SpecialToken.ID)
				}
				ids := st.IDs
				if ids == nil {
					ids = []int64{}
				}
				if seen {
					p.suffix = append(p.suffix, ids...)
				} else {
					p.prefix = append(p.prefix, ids...)
				}
			default:
				return nil, fmt.Errorf("TemplateProcessing: single[%d] is neither SpecialToken nor Sequence", i)
			}
		}
		return p, nil
	case "Sequence":
		var j struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("Sequence: %w", err)
		}
		out := &postProcessor{}
		for i, r := range j.Processors {
			p, err := parsePostProcessor(r)
			if err != nil {
				return nil, fmt.Errorf("Sequence[%d]: %w", i, err)
			}
			if len(p.prefix)+len(p.prefixTokens)+len(p.suffix)+len(p.suffixTokens) > 0 {
				if len(out.prefix)+len(out.prefixTokens)+len(out.suffix)+len(out.suffixTokens) > 0 {
					return nil, fmt.Errorf("Sequence: more than one processor adds special tokens")
				}
				out = p
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unsupported post_processor type %q (supported: ByteLevel, TemplateProcessing, BertProcessing, RobertaProcessing, Sequence)", typ)
	}
}

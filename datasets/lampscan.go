package datasets

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// The questions decoder: encoding/json's Decoder walks the outer list and
// validates each question as a json.RawMessage (one question in memory at a
// time); this file then reads the already-valid bytes directly, without maps or
// reflection, which is what makes import several times faster than decoding each
// question into Go structs. Strings without escapes alias the question's bytes
// (each question gets a fresh buffer that is never written again).

// rawCursor walks one syntactically valid JSON value.
type rawCursor struct {
	b []byte
	i int
}

func (c *rawCursor) ws() {
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte.
func (c *rawCursor) peek() byte {
	c.ws()
	if c.i >= len(c.b) {
		return 0
	}
	return c.b[c.i]
}

// value returns the raw bytes of the next value and moves past it.
func (c *rawCursor) value() []byte {
	c.ws()
	start := c.i
	switch c.b[c.i] {
	case '"':
		c.skipString()
	case '{', '[':
		depth := 0
		for c.i < len(c.b) {
			switch c.b[c.i] {
			case '"':
				c.skipString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					c.i++
					return c.b[start:c.i]
				}
			}
			c.i++
		}
	default:
		for c.i < len(c.b) {
			switch c.b[c.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return c.b[start:c.i]
			}
			c.i++
		}
	}
	return c.b[start:c.i]
}

func (c *rawCursor) skipString() {
	c.i++ // opening quote
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case '\\':
			c.i += 2
			continue
		case '"':
			c.i++
			return
		}
		c.i++
	}
}

// members calls fn for each key and raw value of the object at the cursor.
func (c *rawCursor) members(fn func(key, val []byte) error) error {
	if c.peek() != '{' {
		return fmt.Errorf("want an object, got %s", kindOf(c.b[c.i:]))
	}
	c.i++
	if c.peek() == '}' {
		c.i++
		return nil
	}
	for {
		key := c.value()
		c.ws()
		c.i++ // ':'
		val := c.value()
		if err := fn(key[1:len(key)-1], val); err != nil {
			return err
		}
		if c.peek() == ',' {
			c.i++
			continue
		}
		c.i++ // '}'
		return nil
	}
}

// elements calls fn with a cursor at each element of the list at the cursor.
func (c *rawCursor) elements(fn func(i int) error) error {
	if c.peek() != '[' {
		return fmt.Errorf("want a list, got %s", kindOf(c.b[c.i:]))
	}
	c.i++
	if c.peek() == ']' {
		c.i++
		return nil
	}
	for i := 0; ; i++ {
		if err := fn(i); err != nil {
			return err
		}
		if c.peek() == ',' {
			c.i++
			continue
		}
		c.i++ // ']'
		return nil
	}
}

func kindOf(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "a JSON object"
	case '[':
		return "a JSON list"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// keyIs compares a raw key (without quotes) to a name; keys with escapes never match.
func keyIs(key []byte, name string) bool { return string(key) == name }

// aliasText is rawText for bytes that are never modified afterwards.
func aliasText(raw []byte, name string) (s string, present, keep bool, err error) {
	if len(raw) == 0 || raw[0] == 'n' {
		return "", false, false, nil
	}
	switch raw[0] {
	case '"':
		body := raw[1 : len(raw)-1]
		if !utf8.Valid(body) { // encoding/json replaces invalid bytes with U+FFFD; so do we
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", false, false, fmt.Errorf("%s: %w", name, err)
			}
			return s, true, false, nil
		}
		if !hasEscape(body) {
			if len(body) == 0 {
				return "", true, false, nil
			}
			return unsafe.String(&body[0], len(body)), true, false, nil
		}
		if u, ok := unescape(body); ok {
			return u, true, false, nil
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, false, fmt.Errorf("%s: %w", name, err)
		}
		return s, true, false, nil
	case '{', '[':
		return "", false, false, fmt.Errorf("%s: want a string, got %s", name, kindOf(raw))
	}
	return string(raw), true, true, nil
}

func hasEscape(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

// unescape decodes the escapes of a valid JSON string body; ok=false leaves
// the rare cases (lone surrogates) to encoding/json.
func unescape(b []byte) (string, bool) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch b[i] {
		case '"', '\\', '/':
			out = append(out, b[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(b[i+1 : i+5])
			i += 4
			if utf16.IsSurrogate(r) {
				if i+6 >= len(b) || b[i+1] != '\\' || b[i+2] != 'u' {
					return "", false
				}
				r = utf16.DecodeRune(r, hex4(b[i+3:i+7]))
				if r == utf8.RuneError {
					return "", false
				}
				i += 6
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
	}
	return unsafe.String(unsafe.SliceData(out), len(out)), true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// parseQuestion fills e from one validated question.
func parseQuestion(raw []byte, t *Task, e *Example) error {
	*e = Example{Task: t.Name}
	c := rawCursor{b: raw}
	var idRaw, inRaw, profRaw []byte
	err := c.members(func(key, val []byte) error {
		switch {
		case keyIs(key, "id"):
			idRaw = val
		case keyIs(key, "input"):
			inRaw = val
		case keyIs(key, "profile"):
			profRaw = val
		default:
			return fmt.Errorf("unknown field %q (a LaMP question has id, input, profile)", key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	id, ok, keep, err := aliasText(idRaw, "id")
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("missing field id")
	}
	e.ID = id
	if keep {
		e.Extra = `{"id":` + string(idRaw) + `}`
	}
	in, ok, keep, err := aliasText(inRaw, "input")
	if err != nil {
		return err
	}
	if !ok || keep {
		return errors.New("field input: missing or not a string")
	}
	e.Input = in
	if profRaw == nil || profRaw[0] == 'n' {
		return errors.New("missing field profile")
	}
	pc := rawCursor{b: profRaw}
	if profRaw[0] != '[' {
		return fmt.Errorf("field profile: want a list, got %s", kindOf(profRaw))
	}
	return pc.elements(func(i int) error {
		e.Profile = append(e.Profile, ProfileItem{})
		if err := parseProfileItem(&pc, t, &e.Profile[i]); err != nil {
			return fmt.Errorf("profile[%d]: %w", i, err)
		}
		return nil
	})
}

func parseProfileItem(c *rawCursor, t *Task, p *ProfileItem) error {
	p.Fields = make([]string, len(t.ProfileFields))
	var seen uint64 // bit k: field k present; bit 63: id
	var kept []byte
	keepRaw := func(key, val []byte) {
		if kept == nil {
			kept = append(kept, '{')
		} else {
			kept = append(kept, ',')
		}
		kept = append(kept, '"')
		kept = append(kept, key...)
		kept = append(kept, '"', ':')
		kept = append(kept, val...)
	}
	err := c.members(func(key, val []byte) error {
		switch {
		case keyIs(key, "id"):
			s, ok, keep, err := aliasText(val, "id")
			if err != nil {
				return err
			}
			if ok {
				p.ID = s
				seen |= 1 << 63
			}
			if keep {
				keepRaw(key, val)
			}
		case keyIs(key, "date"):
			s, ok, keep, err := aliasText(val, "date")
			if err != nil {
				return err
			}
			p.Date, p.HasDate = s, ok
			if keep || !ok {
				keepRaw(key, val)
			}
		default:
			k := t.FieldIndex(string(key))
			if k < 0 {
				keepRaw(key, val)
				return nil
			}
			s, ok, keep, err := aliasText(val, t.ProfileFields[k])
			if err != nil {
				return err
			}
			if ok {
				p.Fields[k] = s
				seen |= 1 << k
			}
			if keep {
				keepRaw(key, val)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if seen&(1<<63) == 0 {
		return errors.New("missing field id")
	}
	for k, f := range t.ProfileFields {
		if seen&(1<<k) == 0 {
			return fmt.Errorf("missing field %s (task %s profiles have %v)", f, t.Name, t.ProfileFields)
		}
	}
	if kept != nil {
		p.Extra = string(append(kept, '}'))
	}
	return nil
}

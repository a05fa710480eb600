package datasets

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// ProfileItem is one entry of a user's history.
type ProfileItem struct {
	ID      string
	Fields  []string // values of Task.ProfileFields, same order
	Date    string
	HasDate bool   // LaMP's time-based splits date every item; user-based ones do not
	Extra   string // JSON object of fields kept verbatim for a lossless round trip; "" = none
}

// Example is one LaMP question with its profile and, where known, its gold output.
type Example struct {
	ID        string
	Task      string // Task.Name
	Split     string // train, dev or test
	Scheme    string // "user" or "time" (LaMP's two split schemes), "synth" for the benchmark
	Input     string
	Profile   []ProfileItem
	Output    string
	HasOutput bool   // false for LaMP test questions, whose golds are withheld
	User      string // user key where known ("" = unknown, as in LaMP)
	Chain     string // gold tagged chain where known ("" = none)
	Extra     string // JSON object of question fields the schema does not name; "" = none
}

// Message is one chat message of a prompt.
type Message struct{ Role, Content string }

// Span is one tagged step of a chain; Start and End are UTF-8 byte offsets of
// Text inside Chain (Chain[Start:End] == Text, the content between the tags).
type Span struct {
	Tag, Text  string
	Start, End int32
}

// Verdict is one filter's decision about a chain.
type Verdict struct {
	Name      string
	Pass      bool
	Detail    string
	HasDetail bool
}

// Chain is one tagged reasoning chain with its provenance.
type Chain struct {
	ID       string // the example's id
	Prompt   []Message
	Chain    string // the full completion: <think>…</think><answer>…</answer>
	Spans    []Span
	Answer   string
	Gold     string
	HasGold  bool
	Teacher  string // endpoint/model that wrote it, or "synth"
	Verdicts []Verdict
	Keep     bool // passed every filter
}

// NamedValue is one named number: a reward component or a metric.
type NamedValue struct {
	Name  string
	Value float64
}

// Rollout is one sampled completion in a GRPO group.
type Rollout struct {
	PromptID   string
	GroupIndex int32
	Completion string
	TokenIDs   []int64 // stored as int32: no vocabulary reaches 2³¹ rows
	LogProbs   []float32
	Rewards    []NamedValue // each reward component, as logged
	Reward     float64      // the combined reward
	Advantage  float64
	Stage      string
	Step       int64
}

// Prediction is one model answer to one example with its scores.
type Prediction struct {
	ID         string
	Task       string
	Model      string
	Completion string // the raw generated text
	Prediction string // the parsed answer in the task's label format ("" if unparseable)
	Gold       string
	HasGold    bool
	Metrics    []NamedValue
}

// --- appending rows to builders ---

func appendStr(b array.Builder, s string, valid bool) {
	sb := b.(*array.StringBuilder)
	if valid {
		sb.Append(s)
	} else {
		sb.AppendNull()
	}
}

func appendExample(b *array.RecordBuilder, e *Example) {
	appendStr(b.Field(0), e.ID, true)
	appendStr(b.Field(1), e.Task, true)
	appendStr(b.Field(2), e.Split, true)
	appendStr(b.Field(3), e.Scheme, true)
	appendStr(b.Field(4), e.Input, true)
	lb := b.Field(5).(*array.ListBuilder)
	lb.Append(true)
	sb := lb.ValueBuilder().(*array.StructBuilder)
	nf := sb.NumField()
	for i := range e.Profile {
		p := &e.Profile[i]
		sb.Append(true)
		appendStr(sb.FieldBuilder(0), p.ID, true)
		for k, v := range p.Fields {
			appendStr(sb.FieldBuilder(1+k), v, true)
		}
		appendStr(sb.FieldBuilder(nf-2), p.Date, p.HasDate)
		appendStr(sb.FieldBuilder(nf-1), p.Extra, p.Extra != "")
	}
	appendStr(b.Field(6), e.Output, e.HasOutput)
	appendStr(b.Field(7), e.User, e.User != "")
	appendStr(b.Field(8), e.Chain, e.Chain != "")
	appendStr(b.Field(9), e.Extra, e.Extra != "")
}

func appendNamedValues(lb *array.ListBuilder, vs []NamedValue) {
	lb.Append(true)
	sb := lb.ValueBuilder().(*array.StructBuilder)
	for _, v := range vs {
		sb.Append(true)
		appendStr(sb.FieldBuilder(0), v.Name, true)
		sb.FieldBuilder(1).(*array.Float64Builder).Append(v.Value)
	}
}

func appendChain(b *array.RecordBuilder, c *Chain) {
	appendStr(b.Field(0), c.ID, true)
	lb := b.Field(1).(*array.ListBuilder)
	lb.Append(true)
	sb := lb.ValueBuilder().(*array.StructBuilder)
	for _, m := range c.Prompt {
		sb.Append(true)
		appendStr(sb.FieldBuilder(0), m.Role, true)
		appendStr(sb.FieldBuilder(1), m.Content, true)
	}
	appendStr(b.Field(2), c.Chain, true)
	lb = b.Field(3).(*array.ListBuilder)
	lb.Append(true)
	sb = lb.ValueBuilder().(*array.StructBuilder)
	for _, s := range c.Spans {
		sb.Append(true)
		appendStr(sb.FieldBuilder(0), s.Tag, true)
		appendStr(sb.FieldBuilder(1), s.Text, true)
		sb.FieldBuilder(2).(*array.Int32Builder).Append(s.Start)
		sb.FieldBuilder(3).(*array.Int32Builder).Append(s.End)
	}
	appendStr(b.Field(4), c.Answer, true)
	appendStr(b.Field(5), c.Gold, c.HasGold)
	appendStr(b.Field(6), c.Teacher, true)
	lb = b.Field(7).(*array.ListBuilder)
	lb.Append(true)
	sb = lb.ValueBuilder().(*array.StructBuilder)
	for _, v := range c.Verdicts {
		sb.Append(true)
		appendStr(sb.FieldBuilder(0), v.Name, true)
		sb.FieldBuilder(1).(*array.BooleanBuilder).Append(v.Pass)
		appendStr(sb.FieldBuilder(2), v.Detail, v.HasDetail)
	}
	b.Field(8).(*array.BooleanBuilder).Append(c.Keep)
}

func appendRollout(b *array.RecordBuilder, r *Rollout) {
	appendStr(b.Field(0), r.PromptID, true)
	b.Field(1).(*array.Int32Builder).Append(r.GroupIndex)
	appendStr(b.Field(2), r.Completion, true)
	lb := b.Field(3).(*array.ListBuilder)
	lb.Append(true)
	ib := lb.ValueBuilder().(*array.Int32Builder)
	for _, id := range r.TokenIDs {
		ib.Append(int32(id))
	}
	lb = b.Field(4).(*array.ListBuilder)
	lb.Append(true)
	lb.ValueBuilder().(*array.Float32Builder).AppendValues(r.LogProbs, nil)
	appendNamedValues(b.Field(5).(*array.ListBuilder), r.Rewards)
	b.Field(6).(*array.Float64Builder).Append(r.Reward)
	b.Field(7).(*array.Float64Builder).Append(r.Advantage)
	appendStr(b.Field(8), r.Stage, true)
	b.Field(9).(*array.Int64Builder).Append(r.Step)
}

func appendPrediction(b *array.RecordBuilder, p *Prediction) {
	appendStr(b.Field(0), p.ID, true)
	appendStr(b.Field(1), p.Task, true)
	appendStr(b.Field(2), p.Model, true)
	appendStr(b.Field(3), p.Completion, true)
	appendStr(b.Field(4), p.Prediction, true)
	appendStr(b.Field(5), p.Gold, p.HasGold)
	appendNamedValues(b.Field(6).(*array.ListBuilder), p.Metrics)
}

// --- decoding rows from record batches ---

// rowErr names the record a decoding problem is in.
type rowErr struct {
	row int
	id  string
}

func (r rowErr) wrap(format string, args ...any) error {
	return fmt.Errorf("record %d (id %q): %s", r.row, r.id, fmt.Sprintf(format, args...))
}

// reqStr reads a required string; a null is an error.
func reqStr(col arrow.Array, i int, name string, at rowErr) (string, error) {
	if col.IsNull(i) {
		return "", at.wrap("%s is null", name)
	}
	return col.(*array.String).Value(i), nil
}

func optStr(col arrow.Array, i int) (string, bool) {
	if col.IsNull(i) {
		return "", false
	}
	return col.(*array.String).Value(i), true
}

// listRange is the child index range of list row i (a null list is empty).
func listRange(col arrow.Array, i int) (int, int) {
	l := col.(*array.List)
	if l.IsNull(i) {
		return 0, 0
	}
	s, e := l.ValueOffsets(i)
	return int(s), int(e)
}

func structField(col arrow.Array, j int) arrow.Array {
	return col.(*array.List).ListValues().(*array.Struct).Field(j)
}

// DecodeExamples turns a lamp_example record batch into rows; first is the row
// number of the batch's first record in its file, for error messages.
func DecodeExamples(rec arrow.RecordBatch, first int) ([]Example, error) {
	out := make([]Example, rec.NumRows())
	pcol := rec.Column(5)
	itemType := pcol.(*array.List).ListValues().(*array.Struct).DataType().(*arrow.StructType)
	nf := itemType.NumFields()
	for i := range out {
		at := rowErr{row: first + i}
		if !rec.Column(0).IsNull(i) {
			at.id = rec.Column(0).(*array.String).Value(i)
		}
		e := &out[i]
		var err error
		for k, dst := range []*string{&e.ID, &e.Task, &e.Split, &e.Scheme, &e.Input} {
			if *dst, err = reqStr(rec.Column(k), i, rec.Schema().Field(k).Name, at); err != nil {
				return nil, err
			}
		}
		s, end := listRange(pcol, i)
		e.Profile = make([]ProfileItem, end-s)
		for j := s; j < end; j++ {
			p := &e.Profile[j-s]
			if p.ID, err = reqStr(structField(pcol, 0), j, fmt.Sprintf("profile[%d].id", j-s), at); err != nil {
				return nil, err
			}
			p.Fields = make([]string, nf-3)
			for k := range p.Fields {
				if p.Fields[k], err = reqStr(structField(pcol, 1+k), j, fmt.Sprintf("profile[%d].%s", j-s, itemType.Field(1+k).Name), at); err != nil {
					return nil, err
				}
			}
			p.Date, p.HasDate = optStr(structField(pcol, nf-2), j)
			p.Extra, _ = optStr(structField(pcol, nf-1), j)
		}
		e.Output, e.HasOutput = optStr(rec.Column(6), i)
		e.User, _ = optStr(rec.Column(7), i)
		e.Chain, _ = optStr(rec.Column(8), i)
		e.Extra, _ = optStr(rec.Column(9), i)
	}
	return out, nil
}

func decodeNamedValues(col arrow.Array, i int) []NamedValue {
	s, e := listRange(col, i)
	out := make([]NamedValue, 0, e-s)
	for j := s; j < e; j++ {
		name, _ := optStr(structField(col, 0), j)
		out = append(out, NamedValue{Name: name, Value: structField(col, 1).(*array.Float64).Value(j)})
	}
	return out
}

// DecodeChains turns a tagged_chain record batch into rows.
func DecodeChains(rec arrow.RecordBatch, first int) ([]Chain, error) {
	out := make([]Chain, rec.NumRows())
	for i := range out {
		at := rowErr{row: first + i}
		c := &out[i]
		var err error
		if c.ID, err = reqStr(rec.Column(0), i, "id", at); err != nil {
			return nil, err
		}
		at.id = c.ID
		s, e := listRange(rec.Column(1), i)
		for j := s; j < e; j++ {
			role, _ := optStr(structField(rec.Column(1), 0), j)
			content, _ := optStr(structField(rec.Column(1), 1), j)
			c.Prompt = append(c.Prompt, Message{Role: role, Content: content})
		}
		if c.Chain, err = reqStr(rec.Column(2), i, "chain", at); err != nil {
			return nil, err
		}
		s, e = listRange(rec.Column(3), i)
		for j := s; j < e; j++ {
			tag, _ := optStr(structField(rec.Column(3), 0), j)
			text, _ := optStr(structField(rec.Column(3), 1), j)
			c.Spans = append(c.Spans, Span{Tag: tag, Text: text,
				Start: structField(rec.Column(3), 2).(*array.Int32).Value(j),
				End:   structField(rec.Column(3), 3).(*array.Int32).Value(j)})
		}
		c.Answer, _ = optStr(rec.Column(4), i)
		c.Gold, c.HasGold = optStr(rec.Column(5), i)
		c.Teacher, _ = optStr(rec.Column(6), i)
		s, e = listRange(rec.Column(7), i)
		for j := s; j < e; j++ {
			v := Verdict{Pass: structField(rec.Column(7), 1).(*array.Boolean).Value(j)}
			v.Name, _ = optStr(structField(rec.Column(7), 0), j)
			v.Detail, v.HasDetail = optStr(structField(rec.Column(7), 2), j)
			c.Verdicts = append(c.Verdicts, v)
		}
		c.Keep = rec.Column(8).(*array.Boolean).Value(i)
	}
	return out, nil
}

// DecodeRollouts turns a rollout record batch into rows.
func DecodeRollouts(rec arrow.RecordBatch, first int) ([]Rollout, error) {
	out := make([]Rollout, rec.NumRows())
	for i := range out {
		at := rowErr{row: first + i}
		r := &out[i]
		var err error
		if r.PromptID, err = reqStr(rec.Column(0), i, "prompt_id", at); err != nil {
			return nil, err
		}
		r.GroupIndex = rec.Column(1).(*array.Int32).Value(i)
		r.Completion, _ = optStr(rec.Column(2), i)
		s, e := listRange(rec.Column(3), i)
		ids := rec.Column(3).(*array.List).ListValues().(*array.Int32)
		for _, id := range ids.Int32Values()[s:e] {
			r.TokenIDs = append(r.TokenIDs, int64(id))
		}
		s, e = listRange(rec.Column(4), i)
		lp := rec.Column(4).(*array.List).ListValues().(*array.Float32)
		r.LogProbs = append([]float32(nil), lp.Float32Values()[s:e]...)
		r.Rewards = decodeNamedValues(rec.Column(5), i)
		r.Reward = rec.Column(6).(*array.Float64).Value(i)
		r.Advantage = rec.Column(7).(*array.Float64).Value(i)
		r.Stage, _ = optStr(rec.Column(8), i)
		r.Step = rec.Column(9).(*array.Int64).Value(i)
	}
	return out, nil
}

// DecodePredictions turns a prediction record batch into rows.
func DecodePredictions(rec arrow.RecordBatch, first int) ([]Prediction, error) {
	out := make([]Prediction, rec.NumRows())
	for i := range out {
		at := rowErr{row: first + i}
		p := &out[i]
		var err error
		if p.ID, err = reqStr(rec.Column(0), i, "id", at); err != nil {
			return nil, err
		}
		at.id = p.ID
		p.Task, _ = optStr(rec.Column(1), i)
		p.Model, _ = optStr(rec.Column(2), i)
		p.Completion, _ = optStr(rec.Column(3), i)
		if p.Prediction, err = reqStr(rec.Column(4), i, "prediction", at); err != nil {
			return nil, err
		}
		p.Gold, p.HasGold = optStr(rec.Column(5), i)
		p.Metrics = decodeNamedValues(rec.Column(6), i)
	}
	return out, nil
}

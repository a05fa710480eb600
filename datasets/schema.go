package datasets

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// SchemaVersion is the version of every schema in this file. A file written with
// another version is refused with an error rather than read wrongly; bump it when
// a column is added, removed, renamed or changes type.
const SchemaVersion = 1

// Arrow schema metadata keys stamped on every file tagpr writes.
const (
	MetaKind    = "tagpr.schema"         // which schema: one of the Kind values
	MetaVersion = "tagpr.schema_version" // SchemaVersion as decimal text
	MetaTask    = "tagpr.lamp.task"      // lamp_example only: Task.Name, which decides the profile fields
)

// Kind names one of tagpr's schemas.
type Kind string

// The schemas. SCHEMAS.md documents every column.
const (
	KindExample    Kind = "lamp_example"
	KindChain      Kind = "tagged_chain"
	KindRollout    Kind = "rollout"
	KindPrediction Kind = "prediction"
	KindEmbedding  Kind = "text_embedding"
)

func metadata(kind Kind, extra ...string) arrow.Metadata {
	keys := []string{MetaKind, MetaVersion}
	vals := []string{string(kind), strconv.Itoa(SchemaVersion)}
	for i := 0; i+1 < len(extra); i += 2 {
		keys = append(keys, extra[i])
		vals = append(vals, extra[i+1])
	}
	return arrow.NewMetadata(keys, vals)
}

func str(name string, nullable bool) arrow.Field {
	return arrow.Field{Name: name, Type: arrow.BinaryTypes.String, Nullable: nullable}
}

func listOf(name string, elem arrow.DataType) arrow.Field {
	return arrow.Field{Name: name, Type: arrow.ListOf(elem), Nullable: false}
}

// namedValues is list<struct{name, value}>: rewards and metrics, open-ended by design.
var namedValueType = arrow.StructOf(str("name", false), arrow.Field{Name: "value", Type: arrow.PrimitiveTypes.Float64})

// ExampleSchema is the LaMP example schema for a task. The profile struct holds
// id, the task's own fields in Task.ProfileFields order, an optional date, and
// extra (a JSON object of any fields the task does not name, or of fields whose
// JSON type was not a string, so export restores them exactly).
func ExampleSchema(t *Task) *arrow.Schema {
	item := []arrow.Field{str("id", false)}
	for _, f := range t.ProfileFields {
		item = append(item, str(f, false))
	}
	item = append(item, str("date", true), str("extra", true))
	return arrow.NewSchema([]arrow.Field{
		str("id", false),
		str("task", false),
		str("split", false),
		str("scheme", false),
		str("input", false),
		listOf("profile", arrow.StructOf(item...)),
		str("output", true),
		str("user", true),
		str("chain", true),
		str("extra", true),
	}, &[]arrow.Metadata{metadata(KindExample, MetaTask, t.Name)}[0])
}

// ChainSchema is the tagged-chain schema: one row per (example, teacher sample).
var ChainSchema = arrow.NewSchema([]arrow.Field{
	str("id", false),
	listOf("prompt", arrow.StructOf(str("role", false), str("content", false))),
	str("chain", false),
	listOf("spans", arrow.StructOf(
		str("tag", false), str("text", false),
		arrow.Field{Name: "start", Type: arrow.PrimitiveTypes.Int32},
		arrow.Field{Name: "end", Type: arrow.PrimitiveTypes.Int32})),
	str("answer", false),
	str("gold", true),
	str("teacher", false),
	listOf("verdicts", arrow.StructOf(
		str("name", false),
		arrow.Field{Name: "pass", Type: arrow.FixedWidthTypes.Boolean},
		str("detail", true))),
	{Name: "keep", Type: arrow.FixedWidthTypes.Boolean},
}, &[]arrow.Metadata{metadata(KindChain)}[0])

// RolloutSchema is one sampled completion of an RL step.
var RolloutSchema = arrow.NewSchema([]arrow.Field{
	str("prompt_id", false),
	{Name: "group_index", Type: arrow.PrimitiveTypes.Int32},
	str("completion", false),
	listOf("token_ids", arrow.PrimitiveTypes.Int32),
	listOf("logprobs", arrow.PrimitiveTypes.Float32),
	listOf("rewards", namedValueType),
	{Name: "reward", Type: arrow.PrimitiveTypes.Float64},
	{Name: "advantage", Type: arrow.PrimitiveTypes.Float64},
	str("stage", false),
	{Name: "step", Type: arrow.PrimitiveTypes.Int64},
}, &[]arrow.Metadata{metadata(KindRollout)}[0])

// PredictionSchema is one model answer to one example, with its scores.
var PredictionSchema = arrow.NewSchema([]arrow.Field{
	str("id", false),
	str("task", false),
	str("model", false),
	str("completion", false),
	str("prediction", false),
	str("gold", true),
	listOf("metrics", namedValueType),
}, &[]arrow.Metadata{metadata(KindPrediction)}[0])

// checkSchema verifies that a file's schema is tagpr's kind at this version and
// that its columns have the expected layout. It returns the file's task for
// lamp_example files and tagpr's schema of the kind (whose nullability the
// reader enforces: see firstRequiredNull).
func checkSchema(got *arrow.Schema) (Kind, *Task, *arrow.Schema, error) {
	md := got.Metadata()
	kind, ok := metaValue(md, MetaKind)
	if !ok {
		return "", nil, nil, fmt.Errorf("not a tagpr dataset: schema metadata has no %q key (pandas, Polars and Hugging Face datasets drop it when they write a table: write the table with pyarrow and the schema metadata of the tagpr file it came from, SCHEMAS.md)", MetaKind)
	}
	ver, _ := metaValue(md, MetaVersion)
	if ver != strconv.Itoa(SchemaVersion) {
		return "", nil, nil, fmt.Errorf("%s schema version %q: this tagpr reads version %d", kind, ver, SchemaVersion)
	}
	var want *arrow.Schema
	var task *Task
	switch Kind(kind) {
	case KindExample:
		name, _ := metaValue(md, MetaTask)
		t, err := ParseTask(name)
		if err != nil {
			return "", nil, nil, fmt.Errorf("lamp_example metadata %s: %w", MetaTask, err)
		}
		task, want = t, ExampleSchema(t)
	case KindChain:
		want = ChainSchema
	case KindRollout:
		want = RolloutSchema
	case KindPrediction:
		want = PredictionSchema
	case KindEmbedding:
		want = EmbeddingSchema
	default:
		return "", nil, nil, fmt.Errorf("unknown tagpr schema %q", kind)
	}
	if err := sameColumns(got, want); err != nil {
		return "", nil, nil, fmt.Errorf("%s v%d: %w", kind, SchemaVersion, err)
	}
	return Kind(kind), task, want, nil
}

func metaValue(md arrow.Metadata, key string) (string, bool) {
	i := md.FindKey(key)
	if i < 0 {
		return "", false
	}
	return md.Values()[i], true
}

// sameColumns compares column names and types, ignoring nullability and list
// element names (pyarrow and Parquet name list items differently).
func sameColumns(got, want *arrow.Schema) error {
	names := func(s *arrow.Schema) string { return "[" + fieldNames(s) + "]" }
	if fieldNames(got) != fieldNames(want) {
		hint := ""
		for _, f := range got.Fields() {
			if strings.HasPrefix(f.Name, "__index_level_") {
				hint = "; a pandas index is written as a column unless to_parquet(index=False)"
			}
		}
		return fmt.Errorf("columns %s are not the schema's %s (SCHEMAS.md): write exactly those, in that order%s", names(got), names(want), hint)
	}
	for i, w := range want.Fields() {
		g := got.Field(i)
		if !sameLayout(g.Type, w.Type) {
			return fmt.Errorf("column %q has type %s, want %s (SCHEMAS.md): cast it to that type before writing", g.Name, g.Type, w.Type)
		}
	}
	return nil
}

func sameLayout(a, b arrow.DataType) bool {
	if a.ID() == arrow.NULL {
		return true // a column of nulls only (pandas' None column): the reader makes it b (withTypesOf)
	}
	if a.ID() != b.ID() {
		return false
	}
	switch at := a.(type) {
	case *arrow.ListType:
		return sameLayout(at.Elem(), b.(*arrow.ListType).Elem())
	case *arrow.StructType:
		bt := b.(*arrow.StructType)
		if at.NumFields() != bt.NumFields() {
			return false
		}
		for i := range at.Fields() {
			if at.Field(i).Name != bt.Field(i).Name || !sameLayout(at.Field(i).Type, bt.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return arrow.TypeEqual(a, b)
}

func fieldNames(s *arrow.Schema) string {
	out := ""
	for i, f := range s.Fields() {
		if i > 0 {
			out += ", "
		}
		out += f.Name
	}
	return out
}

// firstRequiredNull finds the first null where tagpr's schema declares a
// value required (non-nullable): a column, a list column's item, or a field
// of one. tagpr never writes one, but a file others write may hold one, and
// a row decoder would read it as "", 0 or false without a word. It returns
// the row and the place ("keep", "prompt[1].content"), or -1.
func firstRequiredNull(arr arrow.Array, f arrow.Field) (int, string) {
	if !f.Nullable && arr.NullN() > 0 {
		for i := 0; i < arr.Len(); i++ {
			if arr.IsNull(i) {
				return i, ""
			}
		}
	}
	switch a := arr.(type) {
	case *array.Struct:
		st := f.Type.(*arrow.StructType)
		for c := 0; c < a.NumField(); c++ {
			if i, at := firstRequiredNull(a.Field(c), st.Field(c)); i >= 0 {
				return i, "." + st.Field(c).Name + at
			}
		}
	case *array.List:
		if a.Len() == 0 {
			return -1, ""
		}
		first, _ := a.ValueOffsets(0)
		_, last := a.ValueOffsets(a.Len() - 1)
		items := array.NewSlice(a.ListValues(), first, last)
		defer items.Release()
		// An item is required too, though the list type says nullable:
		// tagpr writes none, and a decoder would read a null one as an
		// empty struct (IPC keeps its fields' values) or an id of 0.
		elem := f.Type.(*arrow.ListType).ElemField()
		elem.Nullable = false
		j, at := firstRequiredNull(items, elem)
		if j < 0 {
			return -1, ""
		}
		for i := 0; i < a.Len(); i++ {
			if s, e := a.ValueOffsets(i); first+int64(j) < e {
				return i, fmt.Sprintf("[%d]%s", first+int64(j)-s, at)
			}
		}
	}
	return -1, ""
}

// checkRequired refuses a batch with a null firstRequiredNull finds; first
// is the row number of the batch's first record, for the message.
func checkRequired(rec arrow.RecordBatch, want *arrow.Schema, kind Kind, first int) error {
	for c, f := range want.Fields() {
		i, at := firstRequiredNull(rec.Column(c), f)
		if i < 0 {
			continue
		}
		id := ""
		if s, ok := rec.Column(0).(*array.String); ok && s.IsValid(i) {
			id = s.Value(i)
		}
		return fmt.Errorf("record %d (id %q): %s%s is null, and %s rows require it (SCHEMAS.md): give the row a value or drop it", first+i, id, f.Name, at, kind)
	}
	return nil
}

// plainSchema is s with each column's type made plain (plainType), and s's
// metadata.
func plainSchema(s *arrow.Schema) *arrow.Schema {
	fields := s.Fields()
	for i := range fields {
		fields[i].Type = plainType(fields[i].Type)
	}
	md := s.Metadata()
	return arrow.NewSchema(fields, &md)
}

// plainType is t with the encodings other writers pick for tagpr's types
// replaced by the plain ones: large_string, string_view and
// dictionary-encoded strings (pandas, Polars, pyarrow's read_dictionary) by
// string, large_list by list. Field names and nullability are kept. The
// reader casts such columns (conform); their values are the same.
func plainType(t arrow.DataType) arrow.DataType {
	switch t := t.(type) {
	case *arrow.LargeStringType, *arrow.StringViewType:
		return arrow.BinaryTypes.String
	case *arrow.DictionaryType:
		if v := plainType(t.ValueType); v.ID() == arrow.STRING {
			return v
		}
	case *arrow.ListType:
		f := t.ElemField()
		f.Type = plainType(f.Type)
		return arrow.ListOfField(f)
	case *arrow.LargeListType:
		f := t.ElemField()
		f.Type = plainType(f.Type)
		return arrow.ListOfField(f)
	case *arrow.StructType:
		fields := t.Fields()
		for i := range fields {
			fields[i].Type = plainType(fields[i].Type)
		}
		return arrow.StructOf(fields...)
	}
	return t
}

// withTypesOf is s (whose columns have want's layout: sameColumns) with
// every null-typed column or field — pandas writes a column of None as
// type null — given want's type; the reader makes its values nulls of that
// type (conformArray).
func withTypesOf(s, want *arrow.Schema) *arrow.Schema {
	fields := s.Fields()
	for i := range fields {
		fields[i].Type = withTypeOf(fields[i].Type, want.Field(i).Type)
	}
	md := s.Metadata()
	return arrow.NewSchema(fields, &md)
}

func withTypeOf(t, want arrow.DataType) arrow.DataType {
	switch t := t.(type) {
	case *arrow.NullType:
		return want
	case *arrow.ListType:
		f := t.ElemField()
		f.Type = withTypeOf(f.Type, want.(*arrow.ListType).Elem())
		return arrow.ListOfField(f)
	case *arrow.StructType:
		fields := t.Fields()
		for i := range fields {
			fields[i].Type = withTypeOf(fields[i].Type, want.(*arrow.StructType).Field(i).Type)
		}
		return arrow.StructOf(fields...)
	}
	return t
}

package datasets

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// MetaEncoder is the text_embedding schema's key naming the encoder that
// computed the vectors (its identity hash): vectors of another encoder are
// worthless, so a reader compares it before using any row.
const MetaEncoder = "tagpr.encoder_sha256"

// TextEmbedding is one cached text embedding: the sha256 of the text (lower
// hex) and its vector. The text itself is not stored; callers look vectors
// up by the hash of the text they hold.
type TextEmbedding struct {
	TextSHA256 string
	Vector     []float32
}

// EmbeddingSchema is the text_embedding schema (without the encoder key,
// which EmbeddingSchemaFor adds).
var EmbeddingSchema = EmbeddingSchemaFor("")

// EmbeddingSchemaFor is EmbeddingSchema stamped with the encoder's identity.
func EmbeddingSchemaFor(encoderSHA256 string) *arrow.Schema {
	md := metadata(KindEmbedding, MetaEncoder, encoderSHA256)
	return arrow.NewSchema([]arrow.Field{
		str("text_sha256", false),
		listOf("embedding", arrow.PrimitiveTypes.Float32),
	}, &md)
}

func appendEmbedding(b *array.RecordBuilder, e *TextEmbedding) {
	appendStr(b.Field(0), e.TextSHA256, true)
	lb := b.Field(1).(*array.ListBuilder)
	lb.Append(true)
	lb.ValueBuilder().(*array.Float32Builder).AppendValues(e.Vector, nil)
}

func embeddingSize(e *TextEmbedding) int { return 4*len(e.Vector) + len(e.TextSHA256) }

// CreateEmbeddings writes text embeddings computed by one encoder; the file
// appears at Commit.
func CreateEmbeddings(path, encoderSHA256 string) (*Writer[TextEmbedding], error) {
	if encoderSHA256 == "" {
		return nil, fmt.Errorf("create %s: no encoder hash for the text embeddings", path)
	}
	return newWriter(path, EmbeddingSchemaFor(encoderSHA256), appendEmbedding, embeddingSize)
}

// DecodeEmbeddings turns a text_embedding record batch into rows.
func DecodeEmbeddings(rec arrow.RecordBatch, first int) ([]TextEmbedding, error) {
	out := make([]TextEmbedding, rec.NumRows())
	vals := rec.Column(1).(*array.List).ListValues().(*array.Float32).Float32Values()
	for i := range out {
		at := rowErr{row: first + i}
		e := &out[i]
		var err error
		if e.TextSHA256, err = reqStr(rec.Column(0), i, "text_sha256", at); err != nil {
			return nil, err
		}
		at.id = e.TextSHA256
		if len(e.TextSHA256) != 64 {
			return nil, at.wrap("text_sha256 has %d characters, want 64 hex digits", len(e.TextSHA256))
		}
		s, end := listRange(rec.Column(1), i)
		e.Vector = append([]float32(nil), vals[s:end]...)
	}
	return out, nil
}

// ReadEmbeddings reads a text_embedding file and the encoder hash it was
// written for.
func ReadEmbeddings(path string) ([]TextEmbedding, string, error) {
	r, err := OpenReader(path, ReadOptions{})
	if err != nil {
		return nil, "", err
	}
	defer r.Close()
	if r.Kind() != KindEmbedding {
		return nil, "", fmt.Errorf("read %s: holds %s rows, want %s", path, r.Kind(), KindEmbedding)
	}
	encoder, _ := metaValue(r.Schema().Metadata(), MetaEncoder)
	var out []TextEmbedding
	for r.Next() {
		rows, err := DecodeEmbeddings(r.Batch(), r.BatchFirst())
		if err != nil {
			return nil, "", fmt.Errorf("read %s: %w", path, err)
		}
		out = append(out, rows...)
	}
	if err := r.Err(); err != nil {
		return nil, "", err
	}
	return out, encoder, nil
}

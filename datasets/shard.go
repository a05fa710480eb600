package datasets

import (
	"fmt"
	"github.com/apache/arrow-go/v18/arrow"
	"hash/fnv"
	"strconv"
	"strings"
)

// Shard selects the rows whose key (the first column: id or prompt_id) hashes
// to Index modulo Count. The hash is FNV-1a 64 of the key, so a row's shard
// depends only on its id: shards are disjoint, their union is the dataset, and
// the split is the same on every run and for every file order. The zero value
// (Count 0) selects everything.
type Shard struct{ Index, Count int }

// ParseShard reads "i/N" (0 ≤ i < N).
func ParseShard(s string) (Shard, error) {
	if s == "" {
		return Shard{}, nil
	}
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	sh := Shard{Index: i, Count: n}
	if !ok || err1 != nil || err2 != nil || n < 1 {
		return Shard{}, fmt.Errorf("shard %q: want i/N, e.g. 0/4", s)
	}
	return sh, sh.validate()
}

func (s Shard) validate() error {
	if s.Count == 0 && s.Index == 0 {
		return nil
	}
	if s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("shard %d/%d: want 0 ≤ i < N", s.Index, s.Count)
	}
	return nil
}

// Contains reports whether a row with this key belongs to the shard.
func (s Shard) Contains(key string) bool {
	if s.Count <= 1 {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()%uint64(s.Count) == uint64(s.Index)
}

func (s Shard) String() string {
	if s.Count == 0 {
		return "all"
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// HoldsBatch reports whether batch k (0-based) of an input cut into fixed
// batches belongs to the shard: batch k mod Count. Stages whose output
// depends on the batch a row is in (padded generation) shard by batch.
func (s Shard) HoldsBatch(k int) bool {
	return s.Count <= 1 || k%s.Count == s.Index
}

// MetaShard records in a shard file's schema which shard of its input it
// holds ("i/N"), so that merging the shards can tell a missing one.
const MetaShard = "tagpr.shard"

// WithShard is schema with MetaShard set to sh (any earlier value replaced);
// Shard{} (everything) removes it.
func WithShard(schema *arrow.Schema, sh Shard) *arrow.Schema {
	md := schema.Metadata()
	var keys, values []string
	for i, k := range md.Keys() {
		if k != MetaShard {
			keys, values = append(keys, k), append(values, md.Values()[i])
		}
	}
	if sh.Count > 1 {
		keys, values = append(keys, MetaShard), append(values, sh.String())
	}
	meta := arrow.NewMetadata(keys, values)
	return arrow.NewSchema(schema.Fields(), &meta)
}

// ShardOf reads MetaShard from a schema: ok is false when the file is not
// marked as a shard.
func ShardOf(schema *arrow.Schema) (Shard, bool) {
	v, ok := metaValue(schema.Metadata(), MetaShard)
	if !ok {
		return Shard{}, false
	}
	sh, err := ParseShard(v)
	return sh, err == nil
}

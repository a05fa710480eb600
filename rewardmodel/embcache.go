package rewardmodel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/tagpr/tagpr/datasets"
)

// EmbeddingCache holds one encoder's text embeddings keyed by the sha256 of
// the text, in memory and, when it has a path, in an Arrow file
// (datasets' text_embedding schema) stamped with the encoder's hash. A file
// written for another encoder is not used: the cache starts empty
// (Invalidated says so) and Save replaces the file.
//
// Memory is bounded (embeddingCacheBytes): the texts embedded or looked up
// since the last rotation are in vecs, the ones before in old; when vecs is
// full it becomes old and the previous old is dropped. A text in use (a
// profile item every RL step reads) moves back into vecs and stays; a text
// not seen for a whole rotation (a past step's response) is encoded again if
// it returns. Without the bound an RL stage or a scoring loop kept every
// response it ever scored: memory grew with the steps, never stopping.
type EmbeddingCache struct {
	Encoder string // the encoder's SHA256
	Dim     int
	// Invalidated: the file held another encoder's embeddings and was dropped.
	Invalidated bool
	path        string
	vecs, old   map[[sha256.Size]byte][]float32
	dirty       bool
}

// embeddingCacheBytes bounds each of a cache's two generations (vecs, old):
// 512 MiB, some 300,000 texts of a 384-wide encoder, more than a LaMP
// training set's distinct texts. A variable so tests can lower it.
var embeddingCacheBytes int64 = 512 << 20

// perTextBytes is what one cached text costs beyond its vector: the key,
// the slice header and the map's share.
const perTextBytes = 96

// genTexts is how many texts a generation holds.
func (c *EmbeddingCache) genTexts() int {
	return max(1, int(embeddingCacheBytes/int64(4*c.Dim+perTextBytes)))
}

// get returns a cached embedding; one found in old moves into vecs.
func (c *EmbeddingCache) get(k [sha256.Size]byte) ([]float32, bool) {
	if v, ok := c.vecs[k]; ok {
		return v, true
	}
	v, ok := c.old[k]
	if ok {
		delete(c.old, k)
		c.put(k, v)
	}
	return v, ok
}

// put adds an embedding to vecs, rotating the generations when it is full.
func (c *EmbeddingCache) put(k [sha256.Size]byte, v []float32) {
	if len(c.vecs) >= c.genTexts() {
		c.old, c.vecs = c.vecs, make(map[[sha256.Size]byte][]float32, len(c.vecs))
	}
	c.vecs[k] = v
}

// NewEmbeddingCache is an empty cache for enc; path "" keeps it in memory.
func NewEmbeddingCache(enc *TextEncoder, path string) *EmbeddingCache {
	return &EmbeddingCache{Encoder: enc.SHA256, Dim: enc.Dim, path: path, vecs: map[[sha256.Size]byte][]float32{}}
}

// OpenEmbeddingCache reads the cache file at path for enc (a missing file is
// an empty cache). Rows of the wrong width or a broken file are an error
// naming the file: delete it and the embeddings are computed again.
func OpenEmbeddingCache(enc *TextEncoder, path string) (*EmbeddingCache, error) {
	c := NewEmbeddingCache(enc, path)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	rows, encoder, err := datasets.ReadEmbeddings(path)
	if err != nil {
		return nil, fmt.Errorf("embedding cache: %w (delete the file to recompute the embeddings)", err)
	}
	if encoder != c.Encoder {
		c.Invalidated, c.dirty = true, true
		return c, nil
	}
	for i, r := range rows {
		key, err := hex.DecodeString(r.TextSHA256)
		if err != nil || len(key) != sha256.Size {
			return nil, fmt.Errorf("embedding cache %s: row %d: text_sha256 %q is not 64 hex digits (delete the file to recompute the embeddings)", path, i, r.TextSHA256)
		}
		if len(r.Vector) != c.Dim {
			return nil, fmt.Errorf("embedding cache %s: row %d has %d values, the encoder %d (delete the file to recompute the embeddings)", path, i, len(r.Vector), c.Dim)
		}
		c.put([sha256.Size]byte(key), r.Vector)
	}
	return c, nil
}

// Len is the number of cached texts.
func (c *EmbeddingCache) Len() int { return len(c.vecs) + len(c.old) }

// Path is the cache file ("" for a memory-only cache).
func (c *EmbeddingCache) Path() string { return c.path }

func textKey(s string) [sha256.Size]byte { return sha256.Sum256([]byte(s)) }

// Embed returns each text's embedding: cached ones from the cache, the rest
// computed by enc (distinct texts once, in runs of at most batch texts) and
// added to it. Runs are cut from the end, so the last batch texts to encode
// share one run (callers put a step's responses last).
func (c *EmbeddingCache) Embed(ctx context.Context, enc *TextEncoder, texts []string, batch int) ([][]float32, error) {
	if enc.SHA256 != c.Encoder {
		return nil, fmt.Errorf("embedding cache: it holds encoder %.12s's embeddings, not %.12s's", c.Encoder, enc.SHA256)
	}
	out := make([][]float32, len(texts))
	var miss []string
	queued := map[[sha256.Size]byte][]int{} // a missing text's places in texts
	for i, s := range texts {
		k := textKey(s)
		if v, ok := c.get(k); ok {
			out[i] = v
			continue
		}
		if _, ok := queued[k]; !ok {
			miss = append(miss, s)
		}
		queued[k] = append(queued[k], i)
	}
	for end := len(miss); end > 0; end -= batch {
		part := miss[max(0, end-batch):end]
		vecs, err := enc.Encode(ctx, part)
		if err != nil {
			return nil, err
		}
		for j, s := range part {
			k := textKey(s)
			c.put(k, vecs[j])
			for _, i := range queued[k] {
				out[i] = vecs[j]
			}
		}
		c.dirty = true
	}
	return out, nil
}

// Save writes the cache file atomically when it has changed since it was
// read (a memory-only cache does nothing). Rows are in key order, so equal
// caches give equal files.
func (c *EmbeddingCache) Save() error {
	if c.path == "" || !c.dirty {
		return nil
	}
	return c.SaveAs(c.path)
}

// SaveAs writes the cache to path atomically, whatever its state, and makes
// path the cache's file.
func (c *EmbeddingCache) SaveAs(path string) error {
	w, err := datasets.CreateEmbeddings(path, c.Encoder)
	if err != nil {
		return fmt.Errorf("embedding cache: %w", err)
	}
	all := make(map[[sha256.Size]byte][]float32, c.Len())
	maps.Copy(all, c.old)
	maps.Copy(all, c.vecs)
	keys := slices.Collect(maps.Keys(all))
	slices.SortFunc(keys, func(a, b [sha256.Size]byte) int { return slices.Compare(a[:], b[:]) })
	for _, k := range keys {
		if err := w.Write(&datasets.TextEmbedding{TextSHA256: hex.EncodeToString(k[:]), Vector: all[k]}); err != nil {
			w.Abort()
			return fmt.Errorf("embedding cache: %w", err)
		}
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("embedding cache: %w", err)
	}
	c.path, c.dirty = path, false
	return nil
}

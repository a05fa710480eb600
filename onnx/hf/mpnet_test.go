package hf

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// MPNet's bucket of every relative position a 514-position model sees
// (all-mpnet-base-v2's) equals torch's relative_position_bucket, recorded
// by scripts/rewardmodel/mpnet_checkpoint.py; the bucket edges at distances
// 16, 32, 64 and 128 are where float32 rounding could differ.
func TestMPNetBucketsMatchPyTorch(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "rewardmodel", "testdata", "encoder-mpnet", "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		RelativeBuckets struct {
			From    int64   `json:"from"`
			Buckets []int64 `json:"buckets"`
		} `json:"relative_buckets"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.RelativeBuckets.Buckets) != 1027 {
		t.Fatalf("%d buckets recorded, want 1027 (relative positions -513..513)", len(ref.RelativeBuckets.Buckets))
	}
	for i, want := range ref.RelativeBuckets.Buckets {
		rel := ref.RelativeBuckets.From + int64(i)
		if got := mpnetBucket(rel); got != want {
			t.Errorf("relative position %d: bucket %d, torch's %d", rel, got, want)
		}
	}
}

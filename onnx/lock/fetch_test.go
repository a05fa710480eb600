package lock

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fakeTarball puts an npm-style tarball where Fetcher's cache looks first, so
// the test exercises extraction and verification without the network.
func fakeTarball(t *testing.T, cache, pkgDir, inner string, content []byte) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: inner, Mode: 0o644, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(content)
	tw.Close()
	gz.Close()
	writeFile(t, filepath.Join(cache, "npm", pkgDir, "pkg-1.0.0.tgz"), buf.String())
}

func TestFetcherExtractsAndVerifies(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, ".cache")
	content := []byte("shared library bytes")
	fakeTarball(t, cache, "pkg1.0.0", "package/lib/x.so", content)
	sum := sha256.Sum256(content)
	f := &File{Path: filepath.Join(dir, FileName)}
	good := Entry{Name: "x", Kind: Model, Source: "npm:pkg@1.0.0#package/lib/x.so", Path: ".cache/x/x.so",
		Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:])}
	ft := &Fetcher{Lock: f, CacheDir: cache}
	if err := ft.Ensure(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Abs(good))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("extracted %q, %v", got, err)
	}
	// A pin that does not match what the tarball holds is refused and leaves no file.
	bad := good
	bad.Path = ".cache/y/x.so"
	bad.SHA256 = string(bytes.Repeat([]byte("0"), 64))
	err = ft.Ensure(context.Background(), bad)
	var mm *MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("Ensure with wrong pin: %v, want MismatchError", err)
	}
	if _, err := os.Stat(f.Abs(bad)); !os.IsNotExist(err) {
		t.Fatalf("rejected file left behind at %s", f.Abs(bad))
	}
	// A tarball without the named file is an error naming it.
	missing := good
	missing.Path, missing.Source = ".cache/z/x.so", "npm:pkg@1.0.0#package/nope"
	if err := ft.Ensure(context.Background(), missing); err == nil {
		t.Fatal("Ensure of a path the tarball lacks succeeded")
	}
}

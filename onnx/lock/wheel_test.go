package lock

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeWheel writes a small wheel with the layout of the real one (members at
// the given paths, plus the dist-info pip reads) into dir and returns its path.
func fakeWheel(t *testing.T, dir, dist, version, tags string, members map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name, body string) {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	for name, body := range members {
		add(name, body)
	}
	info := strings.ReplaceAll(dist, "-", "_") + "-" + version + ".dist-info/"
	add(info+"METADATA", "Metadata-Version: 2.1\nName: "+dist+"\nVersion: "+version+"\n")
	add(info+"WHEEL", "Wheel-Version: 1.0\nGenerator: tagpr-test\nRoot-Is-Purelib: false\nTag: "+tags+"\n")
	add(info+"RECORD", "")
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, strings.ReplaceAll(dist, "-", "_")+"-"+version+"-"+tags+".whl")
	writeFile(t, p, buf.String())
	return p
}

// usePipOffline points pip (the real client) at a local folder instead of
// PyPI, through pip's own environment settings.
func usePipOffline(t *testing.T, links string) {
	t.Setenv("PIP_NO_INDEX", "1")
	t.Setenv("PIP_FIND_LINKS", links)
	t.Setenv("PIP_NO_CACHE_DIR", "1")
}

func pinWheel(t *testing.T, f *File, name, wheel string) Entry {
	t.Helper()
	sha, size, err := HashFile(wheel)
	if err != nil {
		t.Fatal(err)
	}
	dist, rest, _ := strings.Cut(filepath.Base(wheel), "-")
	ver, _, _ := strings.Cut(rest, "-")
	e := Entry{Name: name, Kind: GPURuntime, Source: "pip:" + strings.ReplaceAll(dist, "_", "-") + "==" + ver,
		Path: ".cache/pip/" + filepath.Base(wheel), Size: size, SHA256: sha}
	f.Upsert(e)
	return e
}

func TestWheelNameTagsAndPipArgs(t *testing.T) {
	tags, err := ParseWheelName("onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl")
	if err != nil || tags.Python != "cp312" || len(tags.Platforms) != 1 {
		t.Fatalf("tags %+v, %v", tags, err)
	}
	args := strings.Join(pipArgs("onnxruntime-gpu==1.31.1", tags, "D"), " ")
	for _, want := range []string{"download --no-deps --only-binary=:all:", "--platform manylinux_2_28_x86_64", "--python-version 3.12", "onnxruntime-gpu==1.31.1"} {
		if !strings.Contains(args, want) {
			t.Errorf("pip args %q lack %q", args, want)
		}
	}
	tags, _ = ParseWheelName("nvidia_cuda_runtime-13.2.86-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl")
	if len(tags.Platforms) != 2 || strings.Contains(strings.Join(pipArgs("x==1", tags, "D"), " "), "--python-version") {
		t.Fatalf("py3 wheel: %+v %v", tags, pipArgs("x==1", tags, "D"))
	}
	if _, err := ParseWheelName("x.tgz"); err == nil {
		t.Fatal("a tarball parsed as a wheel")
	}
	for _, bad := range []string{"pip:onnxruntime-gpu", "pip:==1", "pip:a==1 --index-url x"} {
		if _, ok, err := ParsePipSource(bad); !ok || err == nil {
			t.Errorf("ParsePipSource(%q) accepted", bad)
		}
	}
}

// The GPU runtime's fetch path end to end, offline: pip downloads pinned
// (fake, small) wheels from a local folder, each is verified, the libraries
// are extracted flat with a manifest, and a tampered wheel is refused with
// both hashes named and nothing left behind.
func TestGPUWheelsFetchVerifyExtract(t *testing.T) {
	if _, err := pipCommand(); err != nil {
		t.Fatalf("setup --gpu needs pip and so does this test: %v", err)
	}
	dir := t.TempDir()
	links := filepath.Join(dir, "links")
	ortWheel := fakeWheel(t, links, "onnxruntime-gpu", "1.31.1", "cp312-cp312-manylinux_2_28_x86_64", map[string]string{
		"onnxruntime/capi/libonnxruntime.so.1.31.1":                         "ort core",
		"onnxruntime/capi/libonnxruntime_providers_cuda.so":                 "cuda provider",
		"onnxruntime/capi/libonnxruntime_providers_shared.so":               "shared",
		"onnxruntime/capi/onnxruntime_pybind11_state.cpython-312-x86_64.so": "python module, not a library",
		"onnxruntime/__init__.py":                                           "",
	})
	cublas := fakeWheel(t, links, "nvidia-cublas", "13.4.1.3", "py3-none-manylinux_2_27_x86_64", map[string]string{
		"nvidia/cu13/lib/libcublas.so.13":   "cublas",
		"nvidia/cu13/lib/libcublasLt.so.13": "cublasLt",
		"nvidia/cu13/include/cublas.h":      "header",
	})
	usePipOffline(t, links)

	f := &File{Path: filepath.Join(dir, FileName)}
	eOrt := pinWheel(t, f, "onnxruntime-gpu-wheel-linux-x64", ortWheel)
	eBlas := pinWheel(t, f, "cuda-cublas-wheel-linux-x64", cublas)
	ft := &Fetcher{Lock: f, CacheDir: filepath.Join(dir, ".cache"), Log: t.Logf}
	for _, e := range []Entry{eOrt, eBlas} {
		if err := ft.Ensure(context.Background(), e); err != nil {
			t.Fatalf("fetch %s: %v", e.Name, err)
		}
		if err := f.Verify(e); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.GPUEntries()) != 2 {
		t.Fatalf("GPUEntries = %v", f.GPUEntries())
	}
	gpu := f.GPUDir()
	m, err := f.ExtractWheels(f.GPUEntries(), gpu, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fl := range m.Files {
		names = append(names, fl.Name)
	}
	want := "libcublas.so.13 libcublasLt.so.13 libonnxruntime.so.1.31.1 libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so"
	if strings.Join(names, " ") != want {
		t.Fatalf("extracted %v, want %s", names, want)
	}
	if b, _ := os.ReadFile(filepath.Join(gpu, "libcublasLt.so.13")); string(b) != "cublasLt" {
		t.Fatalf("libcublasLt.so.13 holds %q", b)
	}
	if _, err := f.ReadManifest(gpu); err != nil {
		t.Fatalf("fresh manifest: %v", err)
	}
	// A library changed after extraction is noticed at start.
	writeFile(t, filepath.Join(gpu, "libcublas.so.13"), "other size")
	if _, err := f.ReadManifest(gpu); err == nil || !strings.Contains(err.Error(), "libcublas.so.13") || !strings.Contains(err.Error(), "setup --gpu") {
		t.Fatalf("changed library: %v", err)
	}

	// The index serves a tampered wheel under the pinned name: refused, both
	// hashes named, nothing at the entry's path, the previous file untouched.
	orig, _ := os.ReadFile(cublas)
	writeFile(t, cublas, string(orig)+"tampered")
	tamperedSHA, _, _ := HashFile(cublas)
	os.Remove(f.Abs(eBlas))
	err = ft.Ensure(context.Background(), eBlas)
	var mm *MismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), eBlas.SHA256) || !strings.Contains(err.Error(), tamperedSHA) {
		t.Fatalf("tampered wheel: %v; want a mismatch naming %s and %s", err, eBlas.SHA256, tamperedSHA)
	}
	if _, err := os.Stat(f.Abs(eBlas)); !os.IsNotExist(err) {
		t.Fatalf("tampered wheel left at %s", f.Abs(eBlas))
	}
	// A tampered wheel already in the cache is not extracted.
	writeFile(t, f.Abs(eBlas), string(orig)+"tampered")
	if _, err := f.ExtractWheels(f.GPUEntries(), gpu, nil); !errors.As(err, &mm) {
		t.Fatalf("extract from a tampered cached wheel: %v", err)
	}
	if _, err := f.ReadManifest(gpu); err == nil {
		t.Fatal("a failed extraction left a manifest behind")
	}
	// pip serving another build than the pin names is an error naming both.
	other := eOrt
	other.Path = ".cache/pip/onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl"
	if err := ft.Ensure(context.Background(), other); err == nil {
		t.Fatal("a pin for a build the index lacks was fetched")
	}
}

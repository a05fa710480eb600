package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/tagpr/tagpr/datasets"
)

var trainWords = strings.Fields("the quick brown fox jumps over a lazy dog while seven tired cats watch from the old red barn")

func trainTexts(n int) []string {
	out := make([]string, n)
	for i := range out {
		var w []string
		for k := 0; k < 10; k++ {
			w = append(w, trainWords[(i*7+k*k*3+k)%len(trainWords)])
		}
		out[i] = strings.Join(w, " ")
	}
	return out
}

// trainModelDir makes a tokenizer and a matching built-in model with the binary.
func trainModelDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus.txt")
	os.WriteFile(corpus, []byte(strings.Join(trainTexts(40), "\n")+"\n"), 0o644)
	model := filepath.Join(dir, "model")
	os.MkdirAll(model, 0o755)
	if _, stderr, err := runTagpr(t, ".", nil, "tokenizer", "train", "--corpus", corpus, "--vocab-size", "300", "--out", filepath.Join(model, "tokenizer.json")); err != nil {
		t.Fatalf("tokenizer train: %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, ".", nil, "model", "init", "--arch", "gpt2", "--layers", "2", "--d-model", "32", "--heads", "4",
		"--vocab", "300", "--eos-token-id", "0", "--max-positions", "64", "--out", model, "--force"); err != nil {
		t.Fatalf("model init: %v\n%s", err, stderr)
	}
	return model
}

func writeTrainJSONL(t *testing.T, path string, rows []map[string]any) {
	t.Helper()
	var b strings.Builder
	for _, r := range rows {
		js, _ := json.Marshal(r)
		b.Write(js)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTrainLog(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestTrainLMTextJSONL(t *testing.T) {
	model := trainModelDir(t)
	data := filepath.Join(t.TempDir(), "train.jsonl")
	var rows []map[string]any
	for _, s := range trainTexts(8) {
		rows = append(rows, map[string]any{"text": s})
	}
	writeTrainJSONL(t, data, rows)
	out := filepath.Join(t.TempDir(), "run")
	stdout, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", data, "--steps", "40",
		"--out", out, "--batch", "4", "--seq-len", "16", "--lr", "1e-2", "--checkpoint-every", "10")
	if err != nil {
		t.Fatalf("train lm: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "trained 40 steps") {
		t.Fatalf("output: %s", stdout)
	}
	for _, f := range []string{"model.onnx", "tokenizer.json", "config.json", "checkpoint/LATEST", "checkpoint/step-00000040/weights.safetensors", "checkpoint/step-00000040/optimizer.safetensors"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	log := readTrainLog(t, filepath.Join(out, "checkpoint", "train_log.jsonl"))
	if len(log) != 40 {
		t.Fatalf("log has %d steps, want 40", len(log))
	}
	first, last := log[0]["loss"].(float64), log[39]["loss"].(float64)
	t.Logf("loss %.3f → %.3f", first, last)
	if last > 0.7*first {
		t.Fatalf("loss fell only from %.3f to %.3f", first, last)
	}
	// The exported model loads as a causal LM.
	if _, stderr, err := runTagpr(t, ".", nil, "model", "info", out); err != nil {
		t.Fatalf("model info on the export: %v\n%s", err, stderr)
	}
}

func TestTrainLMLoRAParquetAndArrow(t *testing.T) {
	model := trainModelDir(t)
	dir := t.TempDir()
	texts := trainTexts(8)
	schema := arrow.NewSchema([]arrow.Field{{Name: "text", Type: arrow.BinaryTypes.String}}, nil)
	bld := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	bld.Field(0).(*array.StringBuilder).AppendValues(texts, nil)
	rec := bld.NewRecordBatch()
	defer rec.Release()
	arrowPath := filepath.Join(dir, "train.arrow")
	f, _ := os.Create(arrowPath)
	w, err := ipc.NewFileWriter(f, ipc.WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(rec)
	w.Close()
	f.Close()
	pqPath := filepath.Join(dir, "train.parquet")
	pf, _ := os.Create(pqPath)
	tbl := array.NewTableFromRecords(schema, []arrow.RecordBatch{rec})
	if err := pqarrow.WriteTable(tbl, pf, 64, nil, pqarrow.DefaultWriterProps()); err != nil {
		t.Fatal(err)
	}
	pf.Close()
	for _, data := range []string{arrowPath, pqPath} {
		out := filepath.Join(dir, filepath.Base(data)+".out")
		stdout, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", data, "--steps", "30",
			"--out", out, "--batch", "4", "--seq-len", "16", "--lr", "1e-2", "--lora-rank", "4")
		if err != nil {
			t.Fatalf("train lm --lora-rank on %s: %v\n%s", data, err, stderr)
		}
		log := readTrainLog(t, filepath.Join(out, "checkpoint", "train_log.jsonl"))
		if first, last := log[0]["loss"].(float64), log[len(log)-1]["loss"].(float64); last >= first {
			t.Fatalf("%s: LoRA loss did not fall: %.3f → %.3f\n%s", data, first, last, stdout)
		}
	}
}

func TestTrainLMInterruptAndResume(t *testing.T) {
	model := trainModelDir(t)
	data := filepath.Join(t.TempDir(), "ids.jsonl")
	var rows []map[string]any
	for i := 0; i < 8; i++ {
		rows = append(rows, map[string]any{"input_ids": []int{5 + i, 40, 41 + i, 42, 43, 44, 45 + i}})
	}
	writeTrainJSONL(t, data, rows)
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"train", "lm", "--model", model, "--data", data, "--steps", "100000", "--out", out, "--batch", "2", "--seq-len", "8", "--checkpoint-every", "100000"}
	cmd := exec.Command(tagprBin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(out, "checkpoint", "train_log.jsonl")
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st, err := os.Stat(logPath); err == nil && st.Size() > 0 {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("interrupted run: %v, want exit status 130", err)
	}
	latest, err := os.ReadFile(filepath.Join(out, "checkpoint", "LATEST"))
	if err != nil {
		t.Fatalf("no checkpoint after Ctrl-C: %v", err)
	}
	var done int
	fmt.Sscanf(strings.TrimSpace(string(latest)), "step-%d", &done)
	if done == 0 || len(readTrainLog(t, logPath)) != done {
		t.Fatalf("checkpoint %s, log %d lines", latest, len(readTrainLog(t, logPath)))
	}
	// --steps shapes the schedule: another value is another run, refused.
	args[7] = fmt.Sprint(done + 5)
	if _, stderr, err := runTagpr(t, ".", nil, args...); err == nil || !strings.Contains(stderr, `steps was "100000"`) || !strings.Contains(stderr, "--fresh") {
		t.Fatalf("rerun with another --steps: err %v, stderr %q", err, stderr)
	}
	// The same command resumes; interrupted again a few steps later, the
	// log holds every step once, in order.
	args[7] = "100000"
	cmd = exec.Command(tagprBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && len(readLogSteps(t, logPath)) < done+3; time.Sleep(20 * time.Millisecond) {
	}
	cmd.Process.Signal(syscall.SIGINT)
	// Without a terminal, the note is a JSON log line as the progress is
	// (it was plain text among them).
	if err := cmd.Wait(); !strings.Contains(stderr.String(), fmt.Sprintf(`"msg":"resuming from step %d in `, done)) {
		t.Fatalf("rerun: %v\n%s", err, stderr.String())
	}
	steps := readLogSteps(t, logPath)
	if len(steps) < done+3 {
		t.Fatalf("log has %d steps after resuming, want ≥ %d", len(steps), done+3)
	}
	for i, s := range steps {
		if s != i+1 {
			t.Fatalf("log steps %v: step %d at line %d", steps, s, i+1)
		}
	}
}

func TestTrainLMBadInput(t *testing.T) {
	model := trainModelDir(t)
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.jsonl")
	os.WriteFile(broken, []byte("{\"text\": \"ok\"}\n{not json\n"), 0o644)
	nocol := filepath.Join(dir, "nocol.jsonl")
	writeTrainJSONL(t, nocol, []map[string]any{{"body": "x"}})
	csv := filepath.Join(dir, "data.csv")
	os.WriteFile(csv, []byte("text\nhello\n"), 0o644)
	bigID := filepath.Join(dir, "bigid.jsonl")
	writeTrainJSONL(t, bigID, []map[string]any{{"input_ids": []int{1, 2, 5000}}})
	for path, want := range map[string]string{broken: "line 2", nocol: `no "text"`, csv: "unknown extension", bigID: "outside the model's vocab"} {
		out := filepath.Join(dir, "out-"+filepath.Base(path))
		_, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", path, "--steps", "2", "--out", out, "--seq-len", "16")
		if err == nil || !strings.Contains(stderr, path) || !strings.Contains(stderr, want) {
			t.Errorf("%s: err %v, stderr %q; want an error naming the file and %q", path, err, stderr, want)
		}
		if _, err := os.Stat(filepath.Join(out, "model.onnx")); err == nil {
			t.Errorf("%s: a model was written despite the error", path)
		}
	}
}

// TestTrainLMMemoryRefusal: the peak-memory estimate is printed before
// training; a run whose estimate exceeds --max-memory-gb is refused, naming
// the estimate and what to reduce, and writes no model. The flag sets
// runtime.max_memory_gb, so the key's variable (or the config's value)
// holds without it: train lm used to ignore it and train.
func TestTrainLMMemoryRefusal(t *testing.T) {
	model := trainModelDir(t)
	data := filepath.Join(t.TempDir(), "d.jsonl")
	writeTrainJSONL(t, data, []map[string]any{{"text": trainTexts(1)[0]}})
	for _, c := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"--max-memory-gb", "0.001"}},
		{[]string{"TAGPR_RUNTIME_MAX_MEMORY_GB=0.001"}, nil},
	} {
		out := filepath.Join(t.TempDir(), "run")
		_, stderr, err := runTagpr(t, ".", c.env, append([]string{"train", "lm", "--model", model, "--data", data, "--steps", "2", "--out", out,
			"--seq-len", "16", "--batch", "2"}, c.args...)...)
		for _, want := range []string{"memory estimate: weights", "exceeds the 1 MiB", "reduce --batch or --seq-len", "--lora-rank"} {
			if err == nil || !strings.Contains(stderr, want) {
				t.Errorf("%v %v: err %v, stderr %q; want it to say %q", c.env, c.args, err, stderr, want)
			}
		}
		if _, err := os.Stat(filepath.Join(out, "model.onnx")); err == nil {
			t.Errorf("%v %v: a model was written despite the refusal", c.env, c.args)
		}
	}
}

// TestTrainLMPromptCompletion: with prompt/completion rows only completions
// are targets; the exported model then completes each prompt as trained.
func TestTrainLMPromptCompletion(t *testing.T) {
	stdout := trainPromptCompletion(t, "--batch", "4")
	if want := "trained 120 steps of 4 sequences (--batch 4 × --accum 1) drawn from 4 "; !strings.Contains(stdout, want) {
		t.Errorf("train lm says\n%s\nwant %q", stdout, want)
	}
}

// TestTrainLMPacking: the same with packed rows (two examples per row of 32
// tokens): each completion is still learned on its own. The summary counts
// packed rows: --batch 2 draws 2 of the 2 rows the 4 examples were packed
// into, not 2 of 4 sequences.
func TestTrainLMPacking(t *testing.T) {
	stdout := trainPromptCompletion(t, "--batch", "2", "--packing", "--seq-len", "32")
	if want := "trained 120 steps of 2 packed rows of 32 tokens (--batch 2 × --accum 1) drawn from the 2 rows 4 sequences were packed into"; !strings.Contains(stdout, want) {
		t.Errorf("train lm --packing says\n%s\nwant %q", stdout, want)
	}
}

func trainPromptCompletion(t *testing.T, flags ...string) string {
	model := trainModelDir(t)
	data := filepath.Join(t.TempDir(), "sft.jsonl")
	pairs := [][2]string{{"the quick brown", " fox jumps over"}, {"seven tired", " cats watch from"}, {"a lazy", " dog while the"}, {"old red", " barn the quick"}}
	var rows []map[string]any
	for _, p := range pairs {
		rows = append(rows, map[string]any{"prompt": p[0], "completion": p[1]})
	}
	writeTrainJSONL(t, data, rows)
	out := filepath.Join(t.TempDir(), "run")
	args := append([]string{"train", "lm", "--model", model, "--data", data, "--steps", "120",
		"--out", out, "--seq-len", "16", "--lr", "1e-2"}, flags...)
	stdout, stderr, err := runTagpr(t, ".", nil, args...)
	if err != nil {
		t.Fatalf("train lm: %v\n%s", err, stderr)
	}
	tok := filepath.Join(model, "tokenizer.json")
	for _, p := range pairs[:2] {
		ids, stderr, err := runTagpr(t, ".", nil, "tokenizer", "encode", "--tokenizer", tok, p[0])
		if err != nil {
			t.Fatalf("encode: %v\n%s", err, stderr)
		}
		ids = strings.Trim(strings.TrimSpace(ids), "[]")
		gen, stderr, err := runTagpr(t, ".", nil, "model", "generate", out, "--ids", ids, "--max-new-tokens", "16", "--json")
		if err != nil {
			t.Fatalf("generate: %v\n%s", err, stderr)
		}
		var res struct {
			Completions []struct {
				Tokens []int64 `json:"token_ids"`
			} `json:"completions"`
		}
		if err := json.Unmarshal([]byte(gen), &res); err != nil || len(res.Completions) == 0 {
			t.Fatalf("generate output %q: %v", gen, err)
		}
		var strs []string
		for _, id := range res.Completions[0].Tokens {
			strs = append(strs, fmt.Sprint(id))
		}
		text, stderr, err := runTagpr(t, ".", nil, "tokenizer", "decode", "--tokenizer", tok, strings.Join(strs, ","))
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, stderr)
		}
		if !strings.HasPrefix(text, p[1]) {
			t.Errorf("prompt %q completed as %q, want %q", p[0], text, p[1])
		}
	}
	return stdout
}

// TestTrainLMOnPyTorchExport: full fine-tuning of an Optimum-exported GPT-2
// (pre-tokenized data; the export has no tokenizer.json).
func TestTrainLMOnPyTorchExport(t *testing.T) {
	model, err := filepath.Abs("../../onnx/testdata/pytorch/gpt2")
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "ids.jsonl")
	var rows []map[string]any
	for i := 0; i < 4; i++ {
		rows = append(rows, map[string]any{"input_ids": []int{1, 10 + i, 20 + i, 30, 40 + i, 50, 60 + i}})
	}
	writeTrainJSONL(t, data, rows)
	out := filepath.Join(t.TempDir(), "run")
	if _, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", data, "--steps", "30",
		"--out", out, "--batch", "4", "--seq-len", "8", "--lr", "5e-3"); err != nil {
		t.Fatalf("train lm on the PyTorch export: %v\n%s", err, stderr)
	}
	log := readTrainLog(t, filepath.Join(out, "checkpoint", "train_log.jsonl"))
	first, last := log[0]["loss"].(float64), log[len(log)-1]["loss"].(float64)
	t.Logf("loss %.3f → %.3f", first, last)
	if last > 0.5*first {
		t.Fatalf("loss fell only from %.3f to %.3f", first, last)
	}
	if _, stderr, err := runTagpr(t, ".", nil, "model", "info", out); err != nil {
		t.Fatalf("model info on the export: %v\n%s", err, stderr)
	}
}

// A chains file from `tagpr chains` trains directly: its kept chains, each
// in the chat template after its prompt messages; rejected rows are left out.
func TestTrainLMOnChainsFile(t *testing.T) {
	model, err := filepath.Abs(policyFixture)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "chains.parquet")
	var rows []datasets.Chain
	for i := 0; i < 5; i++ {
		rows = append(rows, datasets.Chain{ID: fmt.Sprint(i), Prompt: []datasets.Message{{Role: "user", Content: fmt.Sprintf("Which tag does movie %d relate to?", i)}},
			Chain:  fmt.Sprintf("<think>\n<recall_history>The user tagged comedy %d times.</recall_history>\n</think>\n<answer>comedy</answer>", i),
			Answer: "comedy", Teacher: "test", Keep: i != 2})
	}
	if err := datasets.WriteRows(data, rows, datasets.CreateChains); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "run")
	stdout, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", data, "--steps", "2",
		"--out", out, "--batch", "2", "--seq-len", "128")
	if err != nil {
		t.Fatalf("train lm on a chains file: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "drawn from 4 (") {
		t.Fatalf("want the 4 kept chains trained on:\n%s", stdout)
	}
	all := make([]datasets.Chain, len(rows))
	copy(all, rows)
	for i := range all {
		all[i].Keep = false
	}
	none := filepath.Join(dir, "none.parquet")
	datasets.WriteRows(none, all, datasets.CreateChains)
	if _, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", none, "--steps", "2", "--out", filepath.Join(dir, "r2")); err == nil || !strings.Contains(stderr, "none of its 5 chains was kept") {
		t.Fatalf("a chains file with nothing kept: err %v\n%s", err, stderr)
	}
}

// TestTrainLMWarnsWhenStepsRepeatRows: a step holds --batch × --accum rows;
// with fewer in the data every step holds some twice (their loss counting
// double), which train lm says; a step that fits says nothing.
func TestTrainLMWarnsWhenStepsRepeatRows(t *testing.T) {
	base := hfBase(t)
	data := idsData(t, 96) // 8 rows
	for _, c := range []struct {
		batch, accum string
		warn         bool
	}{{"6", "2", true}, {"4", "2", false}} {
		out := filepath.Join(t.TempDir(), "run")
		_, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", base, "--data", data, "--steps", "1",
			"--batch", c.batch, "--accum", c.accum, "--seq-len", "10", "--out", out)
		if err != nil {
			t.Fatalf("train lm --batch %s --accum %s: %v\n%s", c.batch, c.accum, err, stderr)
		}
		want := "warning: a step holds 12 sequences (--batch 6 × --accum 2) but the data has 8: every step holds some of them twice"
		if got := strings.Contains(stderr, "warning: a step holds"); got != c.warn || (c.warn && !strings.Contains(stderr, want)) {
			t.Errorf("--batch %s --accum %s: stderr\n%s\nwant the warning %v (%q)", c.batch, c.accum, stderr, c.warn, want)
		}
	}
}

// TestTrainLMSaysWhatLongPromptsLeaveOut: a prompt that fills --seq-len
// leaves nothing to train on and its example is left out; train lm left
// it out without a word (only "drawn from 1" showed it); it says how many.
func TestTrainLMSaysWhatLongPromptsLeaveOut(t *testing.T) {
	model := trainModelDir(t)
	data := filepath.Join(t.TempDir(), "sft.jsonl")
	writeTrainJSONL(t, data, []map[string]any{
		{"prompt": "the", "completion": " fox"},
		{"prompt": "the quick brown fox jumps over the lazy dog while seven tired cats watch from the old red barn", "completion": " ok"},
	})
	_, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", data, "--steps", "1",
		"--out", filepath.Join(t.TempDir(), "run"), "--seq-len", "8")
	if err != nil {
		t.Fatalf("train lm: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "1 of 2 examples of "+data+" left out") {
		t.Fatalf("train lm said\n%s\nwant that 1 of 2 examples was left out", stderr)
	}
}

package datasets

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchSizeMB is the size of the generated questions file: $TAGPR_BENCH_LAMP_MB, default 1024.
func benchSizeMB() int {
	if v, err := strconv.Atoi(os.Getenv("TAGPR_BENCH_LAMP_MB")); err == nil && v > 0 {
		return v
	}
	return 1024
}

// writeLargeQuestions writes a LaMP-4-shaped questions file of about mb MiB:
// profiles of 100–150 dated items with escapes and non-ASCII text, as real dumps have.
func writeLargeQuestions(path string, mb int) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	words := strings.Fields(`the city council said on monday that a new park would open near the river after
		years of debate about costs and traffic while residents asked for more trees benches and a "quiet" zone café
		naïve officials promised answers by june`)
	text := func(i, n int) string {
		var b strings.Builder
		for k := 0; k < n; k++ {
			if k > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[(i*7+k*13)%len(words)])
		}
		return b.String()
	}
	enc := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	target := int64(mb) << 20
	var n int64
	w.WriteString("[")
	for q := 0; n < target; q++ {
		var b strings.Builder
		if q > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"id": "%d", "input": %s, "profile": [`, q, enc("Generate a headline for the following article: "+text(q, 60)))
		items := 100 + q%50
		for i := 0; i < items; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, `{"id": "%d%03d", "title": %s, "text": %s, "date": "20%02d-%02d-%02d"}`,
				q, i, enc(text(q+i, 8)), enc(text(q*3+i, 45)), 10+i%12, 1+i%12, 1+i%28)
		}
		b.WriteString("]}")
		m, _ := w.WriteString(b.String())
		n += int64(m)
	}
	w.WriteString("]\n")
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	return n, f.Close()
}

// TestImportChild is the child process of BenchmarkImportLaMP: with
// TAGPR_IMPORT_CHILD=mode:questions:out it imports (or, mode "scan", only
// token-scans) and prints its peak RSS. Without it, it checks that the peak
// RSS reading works.
func TestImportChild(t *testing.T) {
	spec := os.Getenv("TAGPR_IMPORT_CHILD")
	if spec == "" {
		if hwm, err := peakRSS(); err != nil || hwm <= 0 {
			t.Fatalf("peak RSS from /proc/self/status: %d, %v", hwm, err)
		}
		return
	}
	parts := strings.SplitN(spec, ":", 3)
	start := time.Now()
	switch parts[0] {
	case "import":
		task, _ := ParseTask("4")
		if _, err := ImportLaMP(ImportOptions{Task: task, Questions: parts[1], Split: "dev", Scheme: "time", Out: parts[2]}); err != nil {
			t.Fatal(err)
		}
	case "scan":
		if err := tokenScan(parts[1]); err != nil {
			t.Fatal(err)
		}
	}
	hwm, err := peakRSS()
	if err != nil {
		t.Fatal(err)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	fmt.Printf("child: seconds=%f cpu=%f hwm_kb=%d\n", time.Since(start).Seconds(), cpu.Seconds(), hwm)
}

// tokenScan walks every JSON token of a file with encoding/json: the floor cost
// of reading the file with the standard library, the benchmark's baseline.
func tokenScan(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func peakRSS() (int64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strconv.ParseInt(strings.Fields(line)[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

// childRun is what a child reported: wall and CPU seconds, peak RSS.
type childRun struct {
	secs, cpu float64
	hwmKB     int64
}

func runChild(b *testing.B, mode, questions, out string) (r childRun) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestImportChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TAGPR_IMPORT_CHILD="+mode+":"+questions+":"+out)
	outb, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("child %s: %v\n%s", mode, err, outb)
	}
	for _, line := range strings.Split(string(outb), "\n") {
		if strings.HasPrefix(line, "child: ") {
			fmt.Sscanf(line, "child: seconds=%f cpu=%f hwm_kb=%d", &r.secs, &r.cpu, &r.hwmKB)
			return
		}
	}
	b.Fatalf("child %s printed no figures:\n%s", mode, outb)
	return
}

// BenchmarkImportLaMP imports a generated questions file (TAGPR_BENCH_LAMP_MB,
// default 1 GiB) to Arrow IPC in a child process and reports MB/s and peak RSS,
// against a child that only token-scans the same file with encoding/json.
func BenchmarkImportLaMP(b *testing.B) {
	dir := b.TempDir()
	questions := filepath.Join(dir, "dev_questions.json")
	size, err := writeLargeQuestions(questions, benchSizeMB())
	if err != nil {
		b.Fatal(err)
	}
	mb := float64(size) / 1e6
	var imp, scan childRun
	for i := 0; i < b.N; i++ {
		imp = runChild(b, "import", questions, filepath.Join(dir, "out.arrow"))
		scan = runChild(b, "scan", questions, "")
	}
	// Wall-clock MB/s suffers when the machine is shared; MB per CPU-second
	// (user+sys of the child, GC included) does not, so both are reported.
	b.ReportMetric(mb, "input_MB")
	b.ReportMetric(mb/imp.secs, "import_MB/s")
	b.ReportMetric(mb/imp.cpu, "import_MB/cpu_s")
	b.ReportMetric(mb/scan.secs, "tokenscan_MB/s")
	b.ReportMetric(mb/scan.cpu, "tokenscan_MB/cpu_s")
	b.ReportMetric(scan.cpu/imp.cpu, "x_vs_tokenscan")
	b.ReportMetric(float64(imp.hwmKB)/1024, "import_peak_RSS_MiB")
	b.ReportMetric(float64(scan.hwmKB)/1024, "tokenscan_peak_RSS_MiB")
}

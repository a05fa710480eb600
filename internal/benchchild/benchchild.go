// Package benchchild runs a benchmark's measured work in a fresh child
// process — the test binary itself, running no test — so the figures it
// reports (peak resident memory above all) are that work's alone, not the
// benchmark process's history. Only tests and benchmarks import it.
package benchchild

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// resultPrefix starts the child's result line on stdout.
const resultPrefix = "benchchild "

// Serve is the child's side; call it first in TestMain (or an init). When
// the variable env is set, it runs work with its value, prints the result
// as JSON and exits (1 with the error on stderr); otherwise it returns.
func Serve(env string, work func(spec string) (any, error)) {
	spec, ok := os.LookupEnv(env)
	if !ok {
		return
	}
	r, err := work(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	js, err := json.Marshal(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s%s\n", resultPrefix, js)
	os.Exit(0)
}

// Run starts the test binary as a child with env set to spec as JSON,
// decodes the result Serve printed into result, and returns the child's
// other output (its log lines).
func Run(env string, spec, result any) (log string, err error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), env+"="+string(js))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("benchmark child: %v: %s", err, out)
	}
	var b strings.Builder
	found := false
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, resultPrefix); ok {
			if err := json.Unmarshal([]byte(v), result); err != nil {
				return string(out), fmt.Errorf("benchmark child result %q: %w", v, err)
			}
			found = true
		} else if line != "" {
			b.WriteString(line + "\n")
		}
	}
	if !found {
		return string(out), fmt.Errorf("benchmark child printed no result: %s", out)
	}
	return b.String(), nil
}

// Status reads a "Vm…: N kB" line of /proc/self/status in bytes: VmHWM is
// this process's peak resident memory (reset by exec, unlike getrusage's,
// which a child inherits from its parent), VmRSS the current one. 0 when
// there is no such line.
func Status(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

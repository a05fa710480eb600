// Command benchreport turns `go test -bench` output into one line per figure,
// `bench: NAME VALUE UNIT`, and writes the same figures to a JSON file.
// `make bench` runs it; nothing imports it.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
)

type figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

func main() {
	in := flag.String("in", "", "go test -bench output")
	out := flag.String("out", "bench.json", "JSON file to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	fh, err := os.Open(in)
	if err != nil {
		return err
	}
	defer fh.Close()
	var figs []figure
	pkg := ""
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = p[strings.LastIndex(p, "/")+1:]
			continue
		}
		if strings.HasPrefix(line, "note: ") { // why a figure is missing (e.g. no peer installed)
			fmt.Println(line)
			continue
		}
		if strings.HasPrefix(line, "bench: ") { // figures a benchmark prints itself
			f := strings.Fields(line)
			if len(f) != 4 {
				fmt.Fprintf(os.Stderr, "benchreport: ignoring malformed line %q (want bench: NAME VALUE UNIT)\n", line)
				continue
			}
			v, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				fmt.Fprintf(os.Stderr, "benchreport: ignoring %q: value %q is not a number\n", line, f[2])
				continue
			}
			fmt.Println(line)
			figs = append(figs, figure{f[1], v, f[3]})
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		name := pkg + "." + strings.TrimPrefix(trimProcs(f[0]), "Benchmark")
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			fig := figure{name, v, f[i+1]}
			figs = append(figs, fig)
			fmt.Printf("bench: %s %g %s\n", fig.Name, fig.Value, fig.Unit)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(figs) == 0 {
		return fmt.Errorf("%s holds no benchmark results", in)
	}
	b, err := json.MarshalIndent(figs, "", "  ")
	if err != nil {
		return err
	}
	return renameio.WriteFile(out, append(b, '\n'), 0o644)
}

// trimProcs drops the "-N" GOMAXPROCS suffix go test appends.
func trimProcs(s string) string {
	if i := strings.LastIndex(s, "-"); i > 0 {
		if _, err := strconv.Atoi(s[i+1:]); err == nil {
			return s[:i]
		}
	}
	return s
}

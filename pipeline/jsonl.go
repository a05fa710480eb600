package pipeline

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// readJSONL reads a per-step log (one JSON object per line); a missing
// file is an empty log. A broken last line (a crash while writing it) is
// dropped; a broken line before it is an error naming the file and line.
func readJSONL[T any](path string) ([]T, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var broken error
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		if broken != nil {
			return nil, broken
		}
		var l T
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			broken = fmt.Errorf("read log %s: line %d: %w", path, line, err)
			continue
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read log %s: %w", path, err)
	}
	return out, nil
}

package lm

import (
	"runtime"
	"sync"

	"github.com/tagpr/tagpr/onnx/ort"
)

// spinKey is ORT's switch for intra-op pool threads that busy-wait after a
// run. Generation turns it off unless the caller sets it: between two model
// runs the decode head and the token picks run on the same cores, and a
// pool thread spinning there only takes turns with them.
const spinKey = "session.intra_op.allow_spinning"

// withEntry returns entries with key set to value unless entries already
// sets it (a copy: the caller's map is left alone).
func withEntry(entries map[string]string, key, value string) map[string]string {
	if _, set := entries[key]; set {
		return entries
	}
	out := map[string]string{key: value}
	for k, v := range entries {
		out[k] = v
	}
	return out
}

// threadsOf is the number of threads a session with these options computes
// on: its intra-op threads, or one per core (ORT's default).
func threadsOf(o ort.Options) int {
	if o.IntraOpThreads > 0 {
		return o.IntraOpThreads
	}
	return max(1, runtime.NumCPU())
}

// splitRows calls f(k, lo, hi) for up to par contiguous parts of rows
// [0,B), at most one per row, the first on the calling goroutine and the
// others on their own; it returns when all have.
func splitRows(B, par int, f func(k, lo, hi int)) {
	n := min(par, B)
	if n <= 1 {
		if B > 0 {
			f(0, 0, B)
		}
		return
	}
	var wg sync.WaitGroup
	for k := 1; k < n; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			f(k, k*B/n, (k+1)*B/n)
		}(k)
	}
	f(0, 0, B/n)
	wg.Wait()
}

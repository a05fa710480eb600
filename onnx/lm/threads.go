package lm

import (
	"runtime"
	"sync"

	"github.com/tagpr/tagpr/onnx/ort"
)

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

package train

import (
	"runtime"
	"sync"
)

// chunk is a fixed slice of one parameter; fixed chunking keeps reductions
// (summed per chunk, then in chunk order) identical from run to run.
type chunk struct{ p, lo, hi int }

const chunkSize = 1 << 16

func chunksOf(lens []int) []chunk {
	var cs []chunk
	for p, n := range lens {
		for lo := 0; lo < n; lo += chunkSize {
			cs = append(cs, chunk{p, lo, min(lo+chunkSize, n)})
		}
	}
	return cs
}

// forChunks runs fn over every chunk on all cores.
func forChunks(cs []chunk, fn func(i int, c chunk)) {
	workers := min(runtime.GOMAXPROCS(0), len(cs))
	if workers <= 1 {
		for i, c := range cs {
			fn(i, c)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int, len(cs))
	for i := range cs {
		next <- i
	}
	close(next)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i, cs[i])
			}
		}()
	}
	wg.Wait()
}

func lensOf(x [][]float32) []int {
	out := make([]int, len(x))
	for i, s := range x {
		out[i] = len(s)
	}
	return out
}

package ort

import "runtime"

// afterRun is called once a session run returns. It gives the Go scheduler a
// scheduling point: a goroutine that runs sessions back to back (a decode
// loop: one run every few milliseconds, a little Go between them) otherwise
// never passes through the scheduler, so the runtime's monitor thread takes
// it for a goroutine hogging its P, preempts it every 10 ms and then polls
// every 20 µs for a while. On a machine whose cores ORT's pool keeps busy
// those ~2,500 wake-ups a second each displace one of the pool's threads:
// greedy decode at 2 threads lost ~8 % to them (docs/large-models.md,
// "The Go runtime's monitor"). runtime.Gosched costs well under a microsecond
// when nothing else is runnable.
func afterRun() { runtime.Gosched() }

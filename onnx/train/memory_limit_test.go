package train

import (
	"strings"
	"testing"
)

// The memory a run may plan for is what the machine has free plus what this
// process holds, within a cgroup's limit: MemTotal alone let a run start
// that could never fit while other jobs held memory.
func TestMemoryForCountsWhatOthersHold(t *testing.T) {
	const gib = 1 << 30
	meminfo := []byte("MemTotal:       24641536 kB\nMemFree:         1048576 kB\nMemAvailable:   10485760 kB\nBuffers:           1024 kB\n")
	for _, c := range []struct {
		name        string
		cgroup, rss int64
		want        int64
	}{
		{"others hold 13.5 GiB", 0, 1 * gib, 11 * gib},
		{"a cgroup below", 4 * gib, 1 * gib, 4 * gib},
		{"never past MemTotal", 0, 20 * gib, 24641536 << 10},
	} {
		got, err := memoryFor(meminfo, c.cgroup, c.rss)
		if err != nil || got != c.want {
			t.Errorf("%s: %d (%v), want %d", c.name, got, err, c.want)
		}
	}
	// A kernel without MemAvailable: MemTotal, as before.
	if got, err := memoryFor([]byte("MemTotal: 1024 kB\n"), 0, 0); err != nil || got != 1<<20 {
		t.Errorf("without MemAvailable: %d %v", got, err)
	}
	if _, err := memoryFor([]byte("garbage"), 0, 0); err == nil || !strings.Contains(err.Error(), "MemTotal") {
		t.Errorf("no MemTotal: %v", err)
	}
	if got, err := MachineMemory(); err != nil || got <= selfRSS() {
		t.Errorf("MachineMemory %d (%v): want more than this process's %d resident bytes", got, err, selfRSS())
	}
}

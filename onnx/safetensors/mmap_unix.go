//go:build unix

package safetensors

import (
	"os"
	"syscall"
)

func mapFile(f *os.File, size int64) ([]byte, func() error, error) {
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}

// release drops the resident pages wholly inside [from, to).
func release(data []byte, from, to int64) {
	page := int64(os.Getpagesize())
	from = (from + page - 1) / page * page
	to = to / page * page
	if to > from {
		_ = syscall.Madvise(data[from:to], syscall.MADV_DONTNEED)
	}
}

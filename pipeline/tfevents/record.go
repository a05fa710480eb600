package tfevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC is TFRecord's checksum: CRC-32C, rotated and offset so that a
// CRC of data that itself holds CRCs is not trivially zero.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// appendRecord frames data as one TFRecord: length, its masked CRC, the
// data, its masked CRC (little-endian).
func appendRecord(dst, data []byte) []byte {
	var head [12]byte
	binary.LittleEndian.PutUint64(head[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(head[8:], maskedCRC(head[:8]))
	dst = append(dst, head[:]...)
	dst = append(dst, data...)
	return binary.LittleEndian.AppendUint32(dst, maskedCRC(data))
}

// maxRecord bounds one record's length when reading (an event of scalars
// is a few hundred bytes; a corrupt length must not allocate gigabytes).
const maxRecord = 64 << 20

// errTruncated marks a record cut short: the writer was stopped while
// writing it (the last record of a file), or the file is damaged.
var errTruncated = errors.New("truncated record")

// readRecord reads one TFRecord; io.EOF at a clean end of the stream.
func readRecord(r io.Reader) ([]byte, error) {
	var head [12]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, errTruncated
	}
	n := binary.LittleEndian.Uint64(head[:8])
	if maskedCRC(head[:8]) != binary.LittleEndian.Uint32(head[8:]) {
		return nil, fmt.Errorf("record length checksum mismatch")
	}
	if n > maxRecord {
		return nil, fmt.Errorf("record of %d bytes (more than %d)", n, maxRecord)
	}
	buf := make([]byte, n+4)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, errTruncated
	}
	data := buf[:n]
	if maskedCRC(data) != binary.LittleEndian.Uint32(buf[n:]) {
		return nil, fmt.Errorf("record data checksum mismatch")
	}
	return data, nil
}

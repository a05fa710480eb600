package tfevents

import (
	"fmt"
	"math"
	"sort"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of tensorflow.Event, Summary, Summary.Value and SessionLog
// (tensorflow/core/util/event.proto, tensorflow/core/framework/summary.proto).
const (
	eventWallTime    protowire.Number = 1 // double
	eventStep        protowire.Number = 2 // int64
	eventFileVersion protowire.Number = 3 // string
	eventSummary     protowire.Number = 5 // Summary
	eventSessionLog  protowire.Number = 7 // SessionLog

	summaryValue protowire.Number = 1 // repeated Summary.Value

	valueTag    protowire.Number = 1 // string
	valueSimple protowire.Number = 2 // float

	sessionStatus protowire.Number = 1 // SessionLog.SessionStatus
	statusStart                    = 1 // SessionLog.START
)

// fileVersion is what the first event of every file says.
const fileVersion = "brain.Event:2"

// Event is the part of a tensorflow.Event this package writes and reads.
type Event struct {
	WallTime     float64
	Step         int64
	FileVersion  string             // set on a file's first event
	Scalars      map[string]float32 // a summary's simple values by tag
	SessionStart bool               // a SessionLog START (a restart at Step)
}

func appendEvent(b []byte, e Event) []byte {
	b = protowire.AppendTag(b, eventWallTime, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, math.Float64bits(e.WallTime))
	if e.Step != 0 {
		b = protowire.AppendTag(b, eventStep, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(e.Step))
	}
	switch {
	case e.FileVersion != "":
		b = protowire.AppendTag(b, eventFileVersion, protowire.BytesType)
		b = protowire.AppendString(b, e.FileVersion)
	case e.SessionStart:
		var sl []byte
		sl = protowire.AppendTag(sl, sessionStatus, protowire.VarintType)
		sl = protowire.AppendVarint(sl, statusStart)
		b = protowire.AppendTag(b, eventSessionLog, protowire.BytesType)
		b = protowire.AppendBytes(b, sl)
	case len(e.Scalars) > 0:
		tags := make([]string, 0, len(e.Scalars))
		for t := range e.Scalars {
			tags = append(tags, t)
		}
		sort.Strings(tags)
		var sum []byte
		for _, t := range tags {
			var v []byte
			v = protowire.AppendTag(v, valueTag, protowire.BytesType)
			v = protowire.AppendString(v, t)
			v = protowire.AppendTag(v, valueSimple, protowire.Fixed32Type)
			v = protowire.AppendFixed32(v, math.Float32bits(e.Scalars[t]))
			sum = protowire.AppendTag(sum, summaryValue, protowire.BytesType)
			sum = protowire.AppendBytes(sum, v)
		}
		b = protowire.AppendTag(b, eventSummary, protowire.BytesType)
		b = protowire.AppendBytes(b, sum)
	}
	return b
}

// fields calls f for each field of a protobuf message, skipping none; f
// returns how many bytes of the value it consumed (or a negative protowire
// error code), 0 to have the value skipped.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, b []byte) int) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		m := f(num, typ, b)
		if m == 0 {
			m = protowire.ConsumeFieldValue(num, typ, b)
		}
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
	}
	return nil
}

func parseEvent(b []byte) (Event, error) {
	var e Event
	var inner error
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch {
		case num == eventWallTime && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			e.WallTime = math.Float64frombits(v)
			return n
		case num == eventStep && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			e.Step = int64(v)
			return n
		case num == eventFileVersion && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			e.FileVersion = v
			return n
		case num == eventSummary && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n >= 0 {
				e.Scalars, inner = parseSummary(v)
			}
			return n
		case num == eventSessionLog && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n >= 0 {
				inner = fields(v, func(num protowire.Number, typ protowire.Type, b []byte) int {
					if num != sessionStatus || typ != protowire.VarintType {
						return 0
					}
					s, n := protowire.ConsumeVarint(b)
					e.SessionStart = s == statusStart
					return n
				})
			}
			return n
		}
		return 0
	})
	if err == nil {
		err = inner
	}
	if err != nil {
		return e, fmt.Errorf("event: %w", err)
	}
	return e, nil
}

func parseSummary(b []byte) (map[string]float32, error) {
	out := map[string]float32{}
	var inner error
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) int {
		if num != summaryValue || typ != protowire.BytesType {
			return 0
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return n
		}
		var tag string
		var val float32
		simple := false
		if err := fields(v, func(num protowire.Number, typ protowire.Type, b []byte) int {
			switch {
			case num == valueTag && typ == protowire.BytesType:
				s, n := protowire.ConsumeString(b)
				tag = s
				return n
			case num == valueSimple && typ == protowire.Fixed32Type:
				x, n := protowire.ConsumeFixed32(b)
				val, simple = math.Float32frombits(x), true
				return n
			}
			return 0
		}); err != nil {
			inner = err
		}
		if simple {
			out[tag] = val
		}
		return n
	})
	if err == nil {
		err = inner
	}
	return out, err
}

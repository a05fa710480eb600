package ort

import (
	"fmt"
	"sync/atomic"

	ortgo "github.com/yalue/onnxruntime_go"
)

// Transfers counts bytes moved between host and device memory by device
// tensors and IO bindings: Upload and Download, host values bound to a
// Binding (counted at every Run, since on CUDA ORT copies a bound host
// input to the device and a bound host output back at each run), and
// device-to-device copies (CopyRows). On the CPU device the same code paths
// run and are counted as they would cross on a GPU, so a test on the CPU
// proves what a CUDA run moves per step.
type Transfers struct {
	HostToDevice, DeviceToHost, DeviceToDevice int64
}

var transfers struct{ h2d, d2h, d2d atomic.Int64 }

// TransferCounts is the process's running total.
func TransferCounts() Transfers {
	return Transfers{HostToDevice: transfers.h2d.Load(), DeviceToHost: transfers.d2h.Load(), DeviceToDevice: transfers.d2d.Load()}
}

// Sub is what moved between an earlier total and this one.
func (t Transfers) Sub(before Transfers) Transfers {
	return Transfers{HostToDevice: t.HostToDevice - before.HostToDevice, DeviceToHost: t.DeviceToHost - before.DeviceToHost,
		DeviceToDevice: t.DeviceToDevice - before.DeviceToDevice}
}

func (t Transfers) String() string {
	return fmt.Sprintf("host->device %d B, device->host %d B, device->device %d B", t.HostToDevice, t.DeviceToHost, t.DeviceToDevice)
}

// valueBytes is the size of a host tensor's data.
func valueBytes(v Value) int64 {
	if v == nil {
		return 0
	}
	n := int64(1)
	for _, d := range v.GetShape() {
		n *= d
	}
	switch ortgo.TensorElementDataType(v.DataType()) {
	case ortgo.TensorElementDataTypeInt64, ortgo.TensorElementDataTypeDouble, ortgo.TensorElementDataTypeUint64:
		return 8 * n
	case ortgo.TensorElementDataTypeFloat16, ortgo.TensorElementDataTypeBFloat16, ortgo.TensorElementDataTypeInt16, ortgo.TensorElementDataTypeUint16:
		return 2 * n
	case ortgo.TensorElementDataTypeBool, ortgo.TensorElementDataTypeInt8, ortgo.TensorElementDataTypeUint8:
		return n
	}
	return 4 * n
}

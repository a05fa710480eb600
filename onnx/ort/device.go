package ort

/*
#cgo CFLAGS: -I${SRCDIR}/include
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "onnxruntime_c_api.h"

extern const OrtApi *tagpr_api_get(void);
extern char *tagpr_status_msg(OrtStatus *st);

static char *tagpr_mem_info(const char *name, int id, OrtMemoryInfo **out) {
	const OrtApi *a = tagpr_api_get();
	if (strcmp(name, "Cpu") == 0) return tagpr_status_msg(a->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, out));
	return tagpr_status_msg(a->CreateMemoryInfo(name, OrtArenaAllocator, id, OrtMemTypeDefault, out));
}
static void tagpr_release_mem_info(OrtMemoryInfo *m) { tagpr_api_get()->ReleaseMemoryInfo(m); }

static char *tagpr_session_inputs(OrtSession *s, size_t *n) { return tagpr_status_msg(tagpr_api_get()->SessionGetInputCount(s, n)); }

static char *tagpr_allocator(OrtSession *s, OrtMemoryInfo *m, OrtAllocator **out) {
	return tagpr_status_msg(tagpr_api_get()->CreateAllocator(s, m, out));
}
static void tagpr_release_allocator(OrtAllocator *a) { tagpr_api_get()->ReleaseAllocator(a); }

static char *tagpr_new_tensor(OrtAllocator *al, int64_t *shape, size_t rank, int elem, OrtValue **out) {
	return tagpr_status_msg(tagpr_api_get()->CreateTensorAsOrtValue(al, shape, rank, (ONNXTensorElementDataType)elem, out));
}
static void tagpr_release_value(OrtValue *v) { tagpr_api_get()->ReleaseValue(v); }

static char *tagpr_tensor_data(OrtValue *v, void **out) { return tagpr_status_msg(tagpr_api_get()->GetTensorMutableData(v, out)); }

// tagpr_tensor_info reads a tensor's element type and shape (dims must hold 16).
static char *tagpr_tensor_info(OrtValue *v, int *elem, int64_t *dims, size_t *rank) {
	const OrtApi *a = tagpr_api_get();
	OrtTensorTypeAndShapeInfo *info;
	char *msg = tagpr_status_msg(a->GetTensorTypeAndShape(v, &info));
	if (msg) return msg;
	ONNXTensorElementDataType t;
	msg = tagpr_status_msg(a->GetTensorElementType(info, &t));
	if (!msg) msg = tagpr_status_msg(a->GetDimensionsCount(info, rank));
	if (!msg && *rank > 16) msg = strdup("tensor rank above 16");
	if (!msg) msg = tagpr_status_msg(a->GetDimensions(info, dims, *rank));
	*elem = (int)t;
	a->ReleaseTensorTypeAndShapeInfo(info);
	return msg;
}

// tagpr_copy copies n bytes between host and device memory: memcpy for the
// CPU, cudaMemcpy (from the preloaded libcudart) for CUDA. kind: 1 host to
// device, 2 device to host.
static char *tagpr_copy(int cuda, void *dst, const void *src, size_t n, int kind) {
	if (!cuda) { memcpy(dst, src, n); return NULL; }
	typedef int (*memcpy_fn)(void *, const void *, size_t, int);
	memcpy_fn f = (memcpy_fn)dlsym(RTLD_DEFAULT, "cudaMemcpy");
	if (!f) return strdup("cudaMemcpy not found: libcudart.so.13 is not loaded (start the runtime with provider cuda)");
	int rc = f(dst, src, n, kind);
	if (rc) { char buf[64]; snprintf(buf, sizeof buf, "cudaMemcpy failed: cudaError %d", rc); return strdup(buf); }
	return NULL;
}

// tagpr_copy_d2d copies n bytes within device memory (regions may overlap
// on the CPU; CUDA's device-to-device copy takes disjoint ones).
static char *tagpr_copy_d2d(int cuda, void *dst, const void *src, size_t n) {
	if (!cuda) { memmove(dst, src, n); return NULL; }
	return tagpr_copy(1, dst, src, n, 3);
}

static char *tagpr_binding(OrtSession *s, OrtIoBinding **out) { return tagpr_status_msg(tagpr_api_get()->CreateIoBinding(s, out)); }
static void tagpr_release_binding(OrtIoBinding *b) { tagpr_api_get()->ReleaseIoBinding(b); }
static char *tagpr_bind_input(OrtIoBinding *b, const char *name, OrtValue *v) { return tagpr_status_msg(tagpr_api_get()->BindInput(b, name, v)); }
static char *tagpr_bind_output(OrtIoBinding *b, const char *name, OrtValue *v) { return tagpr_status_msg(tagpr_api_get()->BindOutput(b, name, v)); }
static char *tagpr_bind_output_to(OrtIoBinding *b, const char *name, OrtMemoryInfo *m) {
	return tagpr_status_msg(tagpr_api_get()->BindOutputToDevice(b, name, m));
}
static char *tagpr_run_binding(OrtSession *s, OrtIoBinding *b) {
	const OrtApi *a = tagpr_api_get();
	OrtRunOptions *ro;
	char *msg = tagpr_status_msg(a->CreateRunOptions(&ro));
	if (msg) return msg;
	msg = tagpr_status_msg(a->RunWithBinding(s, ro, b));
	if (!msg) msg = tagpr_status_msg(a->SynchronizeBoundOutputs(b));
	a->ReleaseRunOptions(ro);
	return msg;
}

// tagpr_bound_outputs returns the values of every bound output, in binding
// order, in a malloc'ed array the caller frees (each value is the caller's).
static char *tagpr_bound_outputs(OrtIoBinding *b, OrtValue ***out, size_t *n) {
	const OrtApi *a = tagpr_api_get();
	OrtAllocator *al;
	char *msg = tagpr_status_msg(a->GetAllocatorWithDefaultOptions(&al));
	if (msg) return msg;
	OrtValue **vals = NULL;
	msg = tagpr_status_msg(a->GetBoundOutputValues(b, al, &vals, n));
	if (msg) return msg;
	*out = malloc(sizeof(OrtValue *) * (*n ? *n : 1));
	memcpy(*out, vals, sizeof(OrtValue *) * *n);
	if (vals) { OrtStatus *st = a->AllocatorFree(al, vals); if (st) a->ReleaseStatus(st); }
	return NULL;
}
*/
import "C"

import (
	"fmt"
	"strings"
	"unsafe"

	ortgo "github.com/yalue/onnxruntime_go"
)

// Device-resident tensors and IO binding: onnxruntime_go v1.27 wraps IoBinding
// only for Go-memory values and cannot create a tensor in CUDA memory, so
// these call ORT's C API directly. A DeviceTensor lives in the memory of a
// Device (the CPU, or a CUDA device); a Binding runs a session with inputs
// and outputs bound once, outputs optionally left on the device for the next
// run. With CUDA, weights and the KV cache then stay on the GPU and only what
// is downloaded crosses to the host.

// Device names the memory a DeviceTensor lives in.
type Device struct {
	Provider string // "cpu" or "cuda"
	ID       int    // CUDA device ordinal
}

// DeviceFor is the device sessions with these options compute on.
func DeviceFor(o Options) Device {
	if strings.EqualFold(o.Provider, "cuda") {
		return Device{Provider: "cuda", ID: o.CUDADevice}
	}
	return Device{Provider: "cpu"}
}

func (d Device) cuda() bool { return d.Provider == "cuda" }

func (d Device) String() string {
	if d.cuda() {
		return fmt.Sprintf("cuda:%d", d.ID)
	}
	return "cpu"
}

// memInfo creates ORT's description of the device's memory (the caller
// releases it).
func (d Device) memInfo() (*C.OrtMemoryInfo, error) {
	name := "Cpu"
	if d.cuda() {
		name = "Cuda"
	} else if d.Provider != "cpu" && d.Provider != "" {
		return nil, fmt.Errorf("device %q: want cpu or cuda", d.Provider)
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	var m *C.OrtMemoryInfo
	if err := statusError(C.tagpr_mem_info(cn, C.int(d.ID), &m)); err != nil {
		return nil, fmt.Errorf("memory info for %s: %w", d, err)
	}
	return m, nil
}

// handle is the session's OrtSession: onnxruntime_go keeps it unexported,
// as the first field of the AdvancedSession a DynamicAdvancedSession points
// to (v1.27.0, pinned in go.mod; TestSessionHandle checks it against ORT).
func (s *Session) handle() (*C.OrtSession, error) {
	if s == nil || s.sess == nil {
		return nil, fmt.Errorf("session destroyed")
	}
	adv := *(*unsafe.Pointer)(unsafe.Pointer(s.sess))
	if adv == nil {
		return nil, fmt.Errorf("session %s has no ORT session", s.label)
	}
	return (*C.OrtSession)(*(*unsafe.Pointer)(adv)), nil
}

// ortValue is an onnxruntime_go value's OrtValue (the only field of its
// ValueInternalData).
func ortValue(v Value) *C.OrtValue {
	return (*C.OrtValue)(*(*unsafe.Pointer)(unsafe.Pointer(v.GetInternals())))
}

// DeviceTensor is a tensor in a device's memory, allocated by ORT; it is not
// a Go slice: write it with Upload, read it with Download. Release frees it.
type DeviceTensor struct {
	v     *C.OrtValue
	dev   Device
	shape []int64
	elem  ortgo.TensorElementDataType
}

// allocator is the session's allocator for dev, made on first use and kept
// until the session is destroyed (the tensors it allocated call back into it).
func (s *Session) allocator(h *C.OrtSession, dev Device) (*C.OrtAllocator, error) {
	if p, ok := s.allocs[dev]; ok {
		return (*C.OrtAllocator)(p), nil
	}
	m, err := dev.memInfo()
	if err != nil {
		return nil, err
	}
	defer C.tagpr_release_mem_info(m)
	var al *C.OrtAllocator
	if err := statusError(C.tagpr_allocator(h, m, &al)); err != nil {
		return nil, fmt.Errorf("allocator for %s in session %s: %w", dev, s.label, err)
	}
	if s.allocs == nil {
		s.allocs = map[Device]unsafe.Pointer{}
	}
	s.allocs[dev] = unsafe.Pointer(al)
	return al, nil
}

func (s *Session) releaseAllocators() {
	for d, p := range s.allocs {
		C.tagpr_release_allocator((*C.OrtAllocator)(p))
		delete(s.allocs, d)
	}
}

// NewDeviceTensor allocates a float32 or int64 tensor of the given shape on
// dev with the session's allocator for that device. Release it before the
// session is destroyed; it may be bound to other sessions on the same device
// meanwhile (weights shared by generation and training).
func NewDeviceTensor[T float32 | int64](s *Session, dev Device, shape []int64) (*DeviceTensor, error) {
	return newDeviceTensor(s, dev, shape, elemOf[T]())
}

// NewHalfDeviceTensor allocates a float16 tensor on dev. Go has no float16
// type: such a tensor is filled and read by graphs on the device (a Cast
// from float32 master weights), not by Upload or Download.
func NewHalfDeviceTensor(s *Session, dev Device, shape []int64) (*DeviceTensor, error) {
	return newDeviceTensor(s, dev, shape, ortgo.TensorElementDataTypeFloat16)
}

func newDeviceTensor(s *Session, dev Device, shape []int64, elem ortgo.TensorElementDataType) (*DeviceTensor, error) {
	if len(shape) == 0 {
		return nil, fmt.Errorf("new device tensor: rank-0 tensors are not supported; use shape [1]")
	}
	h, err := s.handle()
	if err != nil {
		return nil, err
	}
	al, err := s.allocator(h, dev)
	if err != nil {
		return nil, err
	}
	cshape := make([]C.int64_t, len(shape))
	for i, d := range shape {
		cshape[i] = C.int64_t(d)
	}
	var v *C.OrtValue
	if err := statusError(C.tagpr_new_tensor(al, &cshape[0], C.size_t(len(shape)), C.int(elem), &v)); err != nil {
		return nil, fmt.Errorf("new %v tensor on %s: %w", shape, dev, err)
	}
	return &DeviceTensor{v: v, dev: dev, shape: append([]int64(nil), shape...), elem: elem}, nil
}

// Upload allocates a tensor on dev holding data.
func Upload[T float32 | int64](s *Session, dev Device, shape []int64, data []T) (*DeviceTensor, error) {
	t, err := NewDeviceTensor[T](s, dev, shape)
	if err != nil {
		return nil, err
	}
	if err := t.Upload(data); err != nil {
		t.Release()
		return nil, err
	}
	return t, nil
}

func (t *DeviceTensor) numel() int64 {
	n := int64(1)
	for _, d := range t.shape {
		n *= d
	}
	return n
}

func elemSize(e ortgo.TensorElementDataType) (int, error) {
	switch e {
	case ortgo.TensorElementDataTypeFloat:
		return 4, nil
	case ortgo.TensorElementDataTypeInt64:
		return 8, nil
	case ortgo.TensorElementDataTypeFloat16:
		return 2, nil
	}
	return 0, fmt.Errorf("element type %s: device tensors hold float32, int64 or float16", e)
}

func elemOf[T float32 | int64]() ortgo.TensorElementDataType {
	var zero T
	if _, ok := any(zero).(int64); ok {
		return ortgo.TensorElementDataTypeInt64
	}
	return ortgo.TensorElementDataTypeFloat
}

func checkElem[T float32 | int64](t *DeviceTensor) error {
	var zero T
	if t.elem != elemOf[T]() {
		return fmt.Errorf("device tensor holds %s, not %T", t.elem, zero)
	}
	return nil
}

// copyData moves the tensor's bytes between host memory at p and the device.
func (t *DeviceTensor) copyData(p unsafe.Pointer, n int, toDevice bool) error {
	var dp unsafe.Pointer
	if err := statusError(C.tagpr_tensor_data(t.v, &dp)); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	cuda := C.int(0)
	if t.dev.cuda() {
		cuda = 1
	}
	if toDevice {
		transfers.h2d.Add(int64(n))
		return statusError(C.tagpr_copy(cuda, dp, p, C.size_t(n), 1))
	}
	transfers.d2h.Add(int64(n))
	return statusError(C.tagpr_copy(cuda, p, dp, C.size_t(n), 2))
}

// Upload copies data (exactly the tensor's element count) to the device.
func (t *DeviceTensor) Upload(data any) error {
	switch d := data.(type) {
	case []float32:
		return uploadSlice(t, d)
	case []int64:
		return uploadSlice(t, d)
	}
	return fmt.Errorf("upload %T: want []float32 or []int64", data)
}

func uploadSlice[T float32 | int64](t *DeviceTensor, d []T) error {
	if err := checkElem[T](t); err != nil {
		return err
	}
	if int64(len(d)) != t.numel() {
		return fmt.Errorf("upload %d values into a %v tensor", len(d), t.shape)
	}
	if len(d) == 0 {
		return nil
	}
	size, _ := elemSize(t.elem)
	return t.copyData(unsafe.Pointer(&d[0]), len(d)*size, true)
}

// Download copies the tensor to a new host slice.
func Download[T float32 | int64](t *DeviceTensor) ([]T, error) {
	if err := checkElem[T](t); err != nil {
		return nil, err
	}
	out := make([]T, t.numel())
	if len(out) == 0 {
		return out, nil
	}
	size, _ := elemSize(t.elem)
	if err := t.copyData(unsafe.Pointer(&out[0]), len(out)*size, false); err != nil {
		return nil, fmt.Errorf("download %v tensor from %s: %w", t.shape, t.dev, err)
	}
	return out, nil
}

// Shape is the tensor's shape; Device where it lives.
func (t *DeviceTensor) Shape() []int64 { return t.shape }
func (t *DeviceTensor) Device() Device { return t.dev }

// Release frees the tensor (safe to call twice).
func (t *DeviceTensor) Release() {
	if t != nil && t.v != nil {
		C.tagpr_release_value(t.v)
		t.v = nil
	}
}

// wrapValue takes ownership of an OrtValue ORT returned.
func wrapValue(v *C.OrtValue, dev Device) (*DeviceTensor, error) {
	var elem C.int
	var rank C.size_t
	dims := make([]C.int64_t, 16)
	if err := statusError(C.tagpr_tensor_info(v, &elem, &dims[0], &rank)); err != nil {
		C.tagpr_release_value(v)
		return nil, err
	}
	t := &DeviceTensor{v: v, dev: dev, elem: ortgo.TensorElementDataType(elem)}
	for _, d := range dims[:rank] {
		t.shape = append(t.shape, int64(d))
	}
	return t, nil
}

// Binding runs a session with its inputs and outputs bound (ORT IO
// binding): host values, device tensors, or outputs left on a device for
// the next run. Bindings persist across runs until rebound.
type Binding struct {
	s    *Session
	h    *C.OrtSession
	b    *C.OrtIoBinding
	outs []boundOutput // in binding order, as ORT returns them
	ran  bool
	// hostIn and hostOut are the bytes of host values bound, by name: they
	// cross between host and device at every run (see Transfers).
	hostIn, hostOut map[string]int64
}

type boundOutput struct {
	name string
	dev  *Device // nil: bound to a caller's value
}

// NewBinding starts an IO binding on the session; Close releases it.
func (s *Session) NewBinding() (*Binding, error) {
	h, err := s.handle()
	if err != nil {
		return nil, err
	}
	var b *C.OrtIoBinding
	if err := statusError(C.tagpr_binding(h, &b)); err != nil {
		return nil, fmt.Errorf("io binding for %s: %w", s.label, err)
	}
	return &Binding{s: s, h: h, b: b, hostIn: map[string]int64{}, hostOut: map[string]int64{}}, nil
}

func (b *Binding) input(name string, v *C.OrtValue) error {
	if !b.s.HasInput(name) {
		return fmt.Errorf("bind %s: model has no input %q", b.s.label, name)
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	if err := statusError(C.tagpr_bind_input(b.b, cn, v)); err != nil {
		return fmt.Errorf("bind %s input %q: %w", b.s.label, name, err)
	}
	return nil
}

// BindInput binds a host value (a Tensor over a Go slice) to an input.
func (b *Binding) BindInput(name string, v Value) error {
	if i, ok := b.s.inIdx[name]; ok {
		if err := checkValue(b.s.inputs[i], v); err != nil {
			return fmt.Errorf("bind %s input %w", b.s.label, err)
		}
	}
	if err := b.input(name, ortValue(v)); err != nil {
		return err
	}
	b.hostIn[name] = valueBytes(v)
	return nil
}

// BindDeviceInput binds a device tensor to an input; it must outlive the runs.
func (b *Binding) BindDeviceInput(name string, t *DeviceTensor) error {
	if t == nil || t.v == nil {
		return fmt.Errorf("bind %s input %q: released device tensor", b.s.label, name)
	}
	if err := b.input(name, t.v); err != nil {
		return err
	}
	delete(b.hostIn, name)
	return nil
}

func (b *Binding) output(name string, dev *Device, bind func(*C.char) *C.char) error {
	if _, ok := b.s.outIdx[name]; !ok {
		return fmt.Errorf("bind %s: model has no output %q", b.s.label, name)
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	if err := statusError(bind(cn)); err != nil {
		return fmt.Errorf("bind %s output %q: %w", b.s.label, name, err)
	}
	for i := range b.outs {
		if b.outs[i].name == name {
			b.outs[i].dev = dev
			return nil
		}
	}
	b.outs = append(b.outs, boundOutput{name: name, dev: dev})
	return nil
}

// BindOutput binds a pre-allocated host value to an output (written in place).
func (b *Binding) BindOutput(name string, v Value) error {
	if err := b.output(name, nil, func(cn *C.char) *C.char { return C.tagpr_bind_output(b.b, cn, ortValue(v)) }); err != nil {
		return err
	}
	b.hostOut[name] = valueBytes(v)
	return nil
}

// BindDeviceOutput binds a pre-allocated device tensor to an output, which
// each run writes in place: an optimizer graph's updated weights and
// moments land back in the tensors the next run reads. It must outlive the
// runs.
func (b *Binding) BindDeviceOutput(name string, t *DeviceTensor) error {
	if t == nil || t.v == nil {
		return fmt.Errorf("bind %s output %q: released device tensor", b.s.label, name)
	}
	if err := b.output(name, nil, func(cn *C.char) *C.char { return C.tagpr_bind_output(b.b, cn, t.v) }); err != nil {
		return err
	}
	delete(b.hostOut, name)
	return nil
}

// BindOutputTo has ORT allocate the output on dev at each run; Outputs hands
// it over.
func (b *Binding) BindOutputTo(name string, dev Device) error {
	m, err := dev.memInfo()
	if err != nil {
		return err
	}
	defer C.tagpr_release_mem_info(m)
	d := dev
	if err := b.output(name, &d, func(cn *C.char) *C.char { return C.tagpr_bind_output_to(b.b, cn, m) }); err != nil {
		return err
	}
	delete(b.hostOut, name)
	return nil
}

// Run runs the session on the bound values. Outputs bound to a device are
// bound afresh first: after a run ORT holds the last outputs there and would
// take them as pre-allocated (with last run's shapes, e.g. a shorter cache).
func (b *Binding) Run() error {
	for _, o := range b.outs {
		if o.dev != nil && b.ran {
			if err := b.BindOutputTo(o.name, *o.dev); err != nil {
				return err
			}
		}
	}
	b.ran = true
	for _, n := range b.hostIn {
		transfers.h2d.Add(n)
	}
	err := statusError(C.tagpr_run_binding(b.h, b.b))
	afterRun()
	if err != nil {
		return fmt.Errorf("run %s: %w", b.s.label, err)
	}
	for _, n := range b.hostOut {
		transfers.d2h.Add(n)
	}
	return nil
}

// CopyRows copies n elements of src, from element srcOff on, to dst at
// element dstOff, within the device (a KV cache's rows regrouped without a
// trip through the host). Both tensors must be on one device and of one
// element type.
func CopyRows(dst *DeviceTensor, dstOff int64, src *DeviceTensor, srcOff, n int64) error {
	if dst == nil || dst.v == nil || src == nil || src.v == nil {
		return fmt.Errorf("copy rows: released device tensor")
	}
	if dst.dev != src.dev || dst.elem != src.elem {
		return fmt.Errorf("copy rows: %s %s tensor into %s %s tensor", src.dev, src.elem, dst.dev, dst.elem)
	}
	if n < 0 || srcOff < 0 || dstOff < 0 || srcOff+n > src.numel() || dstOff+n > dst.numel() {
		return fmt.Errorf("copy rows: %d elements from %d of %v into %d of %v: out of range", n, srcOff, src.shape, dstOff, dst.shape)
	}
	if n == 0 {
		return nil
	}
	size, err := elemSize(dst.elem)
	if err != nil {
		return err
	}
	var dp, sp unsafe.Pointer
	if err := statusError(C.tagpr_tensor_data(dst.v, &dp)); err != nil {
		return err
	}
	if err := statusError(C.tagpr_tensor_data(src.v, &sp)); err != nil {
		return err
	}
	cuda := C.int(0)
	if dst.dev.cuda() {
		cuda = 1
	}
	bytes := n * int64(size)
	transfers.d2d.Add(bytes)
	return statusError(C.tagpr_copy_d2d(cuda, unsafe.Add(dp, dstOff*int64(size)), unsafe.Add(sp, srcOff*int64(size)), C.size_t(bytes)))
}

// Outputs hands over the last run's outputs that were bound to a device,
// by name; the caller releases them (or binds them as the next run's
// inputs: the KV cache never leaves the device).
func (b *Binding) Outputs() (map[string]*DeviceTensor, error) {
	var vals **C.OrtValue
	var n C.size_t
	if err := statusError(C.tagpr_bound_outputs(b.b, &vals, &n)); err != nil {
		return nil, fmt.Errorf("outputs of %s: %w", b.s.label, err)
	}
	defer C.free(unsafe.Pointer(vals))
	list := unsafe.Slice(vals, int(n))
	if len(list) != len(b.outs) {
		for _, v := range list {
			C.tagpr_release_value(v)
		}
		return nil, fmt.Errorf("outputs of %s: ORT returned %d values for %d bound outputs", b.s.label, len(list), len(b.outs))
	}
	out := map[string]*DeviceTensor{}
	var firstErr error
	for i, v := range list {
		if b.outs[i].dev == nil || firstErr != nil {
			C.tagpr_release_value(v) // the caller's own value, or cleanup after an error
			continue
		}
		t, err := wrapValue(v, *b.outs[i].dev)
		if err != nil {
			firstErr = fmt.Errorf("output %q of %s: %w", b.outs[i].name, b.s.label, err)
			continue
		}
		out[b.outs[i].name] = t
	}
	if firstErr != nil {
		for _, t := range out {
			t.Release()
		}
		return nil, firstErr
	}
	return out, nil
}

// Close releases the binding (not the values bound to it).
func (b *Binding) Close() {
	if b != nil && b.b != nil {
		C.tagpr_release_binding(b.b)
		b.b = nil
	}
}

// inputCount asks ORT itself how many inputs the session has (a check that
// handle found the right pointer).
func (s *Session) inputCount() (int, error) {
	h, err := s.handle()
	if err != nil {
		return 0, err
	}
	var n C.size_t
	if err := statusError(C.tagpr_session_inputs(h, &n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

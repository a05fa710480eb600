package ort

/*
#cgo CFLAGS: -I${SRCDIR}/include
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include "onnxruntime_c_api.h"

// The OrtApi of the library onnxruntime_go loaded (dlopen of the same path
// returns the same handle), for the calls onnxruntime_go does not wrap.
static const OrtApi *tagpr_api;

static const char *tagpr_api_init(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) return dlerror();
	const OrtApiBase *(*base)(void) = (const OrtApiBase *(*)(void))dlsym(h, "OrtGetApiBase");
	if (!base) return "the library does not export OrtGetApiBase";
	tagpr_api = base()->GetApi(ORT_API_VERSION);
	if (!tagpr_api) return "the library does not offer ONNX Runtime C API version 24";
	return NULL;
}

// The two below are shared with the other files' C code (device.go).
const OrtApi *tagpr_api_get(void) { return tagpr_api; }

// tagpr_status_msg turns an OrtStatus into a malloc'ed message (NULL: success).
char *tagpr_status_msg(OrtStatus *st) {
	if (!st) return NULL;
	const char *msg = tagpr_api->GetErrorMessage(st);
	char *out = strdup(msg ? msg : "unknown ONNX Runtime error");
	tagpr_api->ReleaseStatus(st);
	return out;
}

static char *tagpr_providers(char ***names, int *n) {
	return tagpr_status_msg(tagpr_api->GetAvailableProviders(names, n));
}

static void tagpr_release_providers(char **names, int n) {
	OrtStatus *st = tagpr_api->ReleaseAvailableProviders(names, n);
	if (st) tagpr_api->ReleaseStatus(st);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// The ORT C API headers in include/ are those of C API 24 (ORT 1.24), as
// onnxruntime_go v1.27 ships them; later libraries keep that ABI.

func initCAPI(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	if msg := C.tagpr_api_init(cpath); msg != nil {
		return fmt.Errorf("ONNX Runtime C API from %s: %s", path, C.GoString(msg))
	}
	return nil
}

func statusError(msg *C.char) error {
	if msg == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(msg))
	return errors.New(C.GoString(msg))
}

// LibraryProviders lists the execution providers the loaded library was
// built with, in ORT's names (CUDAExecutionProvider, CPUExecutionProvider,
// …). Built with is not usable: CUDA also needs its libraries, a driver and
// a device (see CUDAStatus).
func LibraryProviders() ([]string, error) {
	if err := Init(""); err != nil {
		return nil, err
	}
	var names **C.char
	var n C.int
	if err := statusError(C.tagpr_providers(&names, &n)); err != nil {
		return nil, fmt.Errorf("list execution providers: %w", err)
	}
	defer C.tagpr_release_providers(names, n)
	out := make([]string, int(n))
	for i, p := range unsafe.Slice(names, int(n)) {
		out[i] = C.GoString(p)
	}
	return out, nil
}

package ort_test

import (
	"fmt"
	"log"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/ort"
)

// A session runs a model from bytes with Go-owned tensors in and out: here
// y = x·2 + 1 over a [2,3] input, built with onnx/ir.
func Example() {
	if err := ort.Init(""); err != nil { // the library named by the flag, the env var or models.lock
		log.Fatal(err)
	}
	g := ir.NewGraph("affine")
	x := g.Input("x", ir.Float, 2, 3)
	twice := g.Node("Mul", []string{x, g.Initializer("two", ir.Scalar("", float32(2)))}, []string{"twice"})[0]
	g.Node("Add", []string{twice, g.Initializer("one", ir.Scalar("", float32(1)))}, []string{"y"})
	g.Output("y", ir.Float, 2, 3)
	model, err := ir.Marshal(ir.MustModel(g, 18))
	if err != nil {
		log.Fatal(err)
	}
	s, err := ort.NewSession(model, "affine", ort.Options{IntraOpThreads: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Destroy()
	in, err := ort.NewTensor([]int64{2, 3}, []float32{0, 1, 2, 3, 4, 5})
	if err != nil {
		log.Fatal(err)
	}
	defer in.Destroy()
	out, err := s.Run(map[string]ort.Value{"x": in}, nil) // nil: ORT allocates the outputs
	if err != nil {
		log.Fatal(err)
	}
	defer out.Destroy()
	y, err := ort.Data[float32]("y", out.Get("y"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Inputs()[0].Name, "→", y)
	// Output: x → [1 3 5 7 9 11]
}

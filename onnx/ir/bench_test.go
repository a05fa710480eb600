package ir_test

import (
	"testing"
	"time"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/ort"
)

// addModel is c = a + b over [1024] float32, built with the ir builder.
func addModel(b *testing.B) []byte {
	g := ir.NewGraph("add")
	g.Input("a", ir.Float, 1024)
	g.Input("b", ir.Float, 1024)
	g.Node("Add", []string{"a", "b"}, []string{"c"})
	g.Output("c", ir.Float, 1024)
	data, err := ir.Marshal(ir.MustModel(g, 0))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkSessionCreate: creating a session from model bytes (the 1-node
// Add model), through ort.NewSession and straight through onnxruntime_go,
// interleaved. ort.NewSession also reads the model's input/output
// declarations (onnxruntime_go does that with a second session), so expect
// about 2x.
func BenchmarkSessionCreate(b *testing.B) {
	initORT(b)
	model := addModel(b)
	const reps = 50
	opts := ort.Options{IntraOpThreads: 1}
	so, err := ortgo.NewSessionOptions()
	if err != nil {
		b.Fatal(err)
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(1); err != nil {
		b.Fatal(err)
	}
	create := func() {
		s, err := ort.NewSession(model, "add", opts)
		if err != nil {
			b.Fatal(err)
		}
		s.Destroy()
	}
	createDirect := func() {
		s, err := ortgo.NewDynamicAdvancedSessionWithONNXData(model, []string{"a", "b"}, []string{"c"}, so)
		if err != nil {
			b.Fatal(err)
		}
		s.Destroy()
	}
	for r := 0; r < 5; r++ { // warm up
		create()
		createDirect()
	}
	var ours, direct time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for r := 0; r < reps; r++ {
			start := time.Now()
			create()
			ours += time.Since(start)
			start = time.Now()
			createDirect()
			direct += time.Since(start)
		}
	}
	n := float64(b.N * reps)
	b.ReportMetric(float64(ours.Nanoseconds())/n, "ns/create")
	b.ReportMetric(float64(direct.Nanoseconds())/n, "ns/create_direct")
	b.ReportMetric(float64(ours)/float64(direct), "x_vs_direct")
}

// BenchmarkRunAdd1024: one run of the Add model through ort.Session.Run
// (named inputs, shape checks, outputs by name) against
// DynamicAdvancedSession.Run on the same model and tensors, interleaved in
// blocks so both see the same machine noise. x_vs_direct is the wrapper's
// overhead ratio.
func BenchmarkRunAdd1024(b *testing.B) {
	initORT(b)
	model := addModel(b)
	sess, err := ort.NewSession(model, "add", ort.Options{IntraOpThreads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Destroy()
	so, err := ortgo.NewSessionOptions()
	if err != nil {
		b.Fatal(err)
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(1); err != nil {
		b.Fatal(err)
	}
	ds, err := ortgo.NewDynamicAdvancedSessionWithONNXData(model, []string{"a", "b"}, []string{"c"}, so)
	if err != nil {
		b.Fatal(err)
	}
	defer ds.Destroy()

	av, bv := make([]float32, 1024), make([]float32, 1024)
	for i := range av {
		av[i], bv[i] = float32(i), 1
	}
	at, err := ort.NewTensor([]int64{1024}, av)
	if err != nil {
		b.Fatal(err)
	}
	defer at.Destroy()
	bt, err := ort.NewTensor([]int64{1024}, bv)
	if err != nil {
		b.Fatal(err)
	}
	defer bt.Destroy()
	inputs := map[string]ort.Value{"a": at, "b": bt}

	runOurs := func() {
		out, err := sess.Run(inputs, nil)
		if err != nil {
			b.Fatal(err)
		}
		out.Destroy()
	}
	runDirect := func() {
		outs := []ortgo.Value{nil}
		if err := ds.Run([]ortgo.Value{at, bt}, outs); err != nil {
			b.Fatal(err)
		}
		outs[0].Destroy()
	}
	// Check both give a + b before timing.
	out, err := sess.Run(inputs, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := ort.Data[float32]("c", out.Get("c"))
	if err != nil || c[1023] != 1024 {
		b.Fatalf("c[1023] = %v, %v; want 1024", c, err)
	}
	out.Destroy()
	for i := 0; i < 200; i++ { // warm up
		runOurs()
		runDirect()
	}

	const blocks, perBlock = 20, 250
	var ours, direct time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := 0; k < blocks; k++ {
			start := time.Now()
			for r := 0; r < perBlock; r++ {
				runOurs()
			}
			ours += time.Since(start)
			start = time.Now()
			for r := 0; r < perBlock; r++ {
				runDirect()
			}
			direct += time.Since(start)
		}
	}
	n := float64(b.N * blocks * perBlock)
	b.ReportMetric(float64(ours.Nanoseconds())/n, "ns/run")
	b.ReportMetric(float64(direct.Nanoseconds())/n, "ns/run_direct")
	b.ReportMetric(float64(ours)/float64(direct), "x_vs_direct")
}

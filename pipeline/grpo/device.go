package grpo

import (
	"fmt"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

// deviceRun keeps the policy's weights and AdamW moments on the device
// when the generation model is device-resident (CUDA, or
// Options.Load.DeviceResident): the weights are uploaded once, rollouts read
// them there and the updates write them in place — one copy for both. With
// Options.Load.Half, rollouts read float16 copies instead, cast from the
// float32 master weights on the device before each step's rollouts.
type deviceRun struct {
	weights map[string]*ort.DeviceTensor // allocated by the generation session
	dt      *train.DeviceTrainer
}

// openDevice returns nil when generation runs on the host.
func openDevice(tr *train.Trainer, gen *lm.Model, ws []lm.Weight, session ort.Options) (*deviceRun, error) {
	if on, _ := gen.DeviceResident(); !on {
		return nil, nil
	}
	d := &deviceRun{}
	var err error
	if d.weights, err = gen.UploadWeights(ws); err != nil {
		return nil, err
	}
	if d.dt, err = train.NewDeviceTrainer(tr, session, d.weights); err != nil {
		d.close()
		return nil, fmt.Errorf("device trainer: %w", err)
	}
	return d, nil
}

// refresh casts the trainer's float32 weights into the generation model's
// float16 copies (with Load.Half), before a rollout.
func (d *deviceRun) refresh(gen *lm.Model) error {
	if d == nil || !gen.HalfWeights() {
		return nil
	}
	return gen.RefreshHalf(d.dt.Weights())
}

func (d *deviceRun) trainer() *train.DeviceTrainer {
	if d == nil {
		return nil
	}
	return d.dt
}

func (d *deviceRun) close() {
	if d == nil {
		return
	}
	d.dt.Close()
	for _, w := range d.weights {
		w.Release()
	}
}

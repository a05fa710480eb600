package serve

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tagpr/tagpr/onnx/lm"
)

// SamplingDefaults are the temperature, top_p, top_k and
// repetition_penalty a request (or `tagpr model generate` without the
// flags) samples with when it leaves them out: the model's
// generation_config.json's, as transformers and vLLM take them, else the
// caller's fallback. A request's own values win.
type SamplingDefaults struct {
	lm.Sampling
	// File is the generation_config.json read ("" none); FromFile says
	// which defaults it gave: "temperature", "top_p", "top_k",
	// "repetition_penalty", or "do_sample" (false: greedy, and the file's
	// temperature, top_p and top_k unused).
	File     string
	FromFile map[string]bool
	// Ignored are the file's keys tagpr does not implement, set to other
	// than their neutral value (lm.GenerationConfig.Unimplemented).
	Ignored []string
}

// ReadSamplingDefaults takes gc's sampling keys over fallback: do_sample
// false is greedy (as in transformers, whatever else the file says);
// otherwise each of temperature, top_p and top_k the file sets replaces
// fallback's (a key it leaves out keeps fallback's: transformers would
// take its own top_k 50 there, vLLM leaves it off, as tagpr does).
// repetition_penalty applies either way, greedy too, as transformers
// applies it. An out-of-range value is an error naming the file and key.
func ReadSamplingDefaults(gc *lm.GenerationConfig, fallback lm.Sampling) (SamplingDefaults, error) {
	d := SamplingDefaults{Sampling: fallback, FromFile: map[string]bool{}}
	if gc == nil {
		return d, nil
	}
	d.File, d.Ignored = gc.Path, gc.Unimplemented
	bad := func(key string, v any, want string) error {
		return fmt.Errorf("%s: %s is %v; want %s (fix or remove the key; it is the default for requests that leave %s out)", gc.Path, key, v, want, key)
	}
	if t := gc.Temperature; t != nil && (!(*t >= 0 && !math.IsInf(*t, 0)) || *t > 0 && *t < lm.MinTemperature) {
		return d, bad("temperature", *t, fmt.Sprintf("0 (greedy) or a finite number ≥ %g", lm.MinTemperature))
	}
	if p := gc.TopP; p != nil && !(*p > 0 && *p <= 1) {
		return d, bad("top_p", *p, "a value in (0, 1]")
	}
	if k := gc.TopK; k != nil && *k < 0 {
		return d, bad("top_k", *k, "≥ 0 (0: off)")
	}
	if r := gc.RepetitionPenalty; r != nil && !(*r > 0 && !math.IsInf(*r, 0)) {
		return d, bad("repetition_penalty", *r, "a finite number > 0 (1: off)")
	}
	switch {
	case gc.DoSample != nil && !*gc.DoSample:
		d.Sampling = lm.Sampling{}
		d.FromFile["do_sample"] = true
	default:
		if gc.Temperature != nil {
			d.Temperature = *gc.Temperature
			d.FromFile["temperature"] = true
		}
		if gc.TopP != nil {
			d.TopP = *gc.TopP
			d.FromFile["top_p"] = true
		}
		if gc.TopK != nil {
			d.TopK = *gc.TopK
			d.FromFile["top_k"] = true
		}
	}
	if r := gc.RepetitionPenalty; r != nil && *r != 1 {
		d.RepetitionPenalty = *r
		d.FromFile["repetition_penalty"] = true
	}
	return d, nil
}

// String says what the defaults are and where each came from:
// "temperature 0.6, top_p 0.95, top_k 20 from m/generation_config.json".
func (d SamplingDefaults) String() string {
	var parts []string
	if f := d.FileString(); f != "" {
		parts = append(parts, f)
	}
	if d.FromFile["do_sample"] {
		return parts[0]
	}
	var rest []string
	for _, k := range samplingKeys[:3] {
		if !d.FromFile[k] {
			rest = append(rest, k+" "+d.value(k))
		}
	}
	if len(rest) > 0 {
		parts = append(parts, strings.Join(rest, ", ")+" (tagpr's default)")
	}
	return strings.Join(parts, "; ")
}

// FileString is the part of String that came from generation_config.json
// ("" none).
func (d SamplingDefaults) FileString() string {
	var file []string
	for _, k := range samplingKeys {
		if d.FromFile[k] && !(d.FromFile["do_sample"] && k != "repetition_penalty") {
			file = append(file, k+" "+d.value(k))
		}
	}
	if d.FromFile["do_sample"] {
		if len(file) > 0 {
			return "greedy, " + file[0] + " (do_sample false in " + d.File + ")"
		}
		return "greedy (do_sample false in " + d.File + ")"
	}
	if len(file) == 0 {
		return ""
	}
	return strings.Join(file, ", ") + " from " + d.File
}

// samplingKeys are the generation_config.json keys SamplingDefaults takes,
// in the order String names them.
var samplingKeys = []string{"temperature", "top_p", "top_k", "repetition_penalty"}

func (d SamplingDefaults) value(key string) string {
	switch key {
	case "temperature":
		if d.Temperature <= 0 {
			return "0 (greedy)"
		}
		return strconv.FormatFloat(d.Temperature, 'g', -1, 64)
	case "top_p":
		if d.TopP > 0 && d.TopP < 1 {
			return strconv.FormatFloat(d.TopP, 'g', -1, 64)
		}
	case "top_k":
		if d.TopK > 0 {
			return strconv.Itoa(d.TopK)
		}
	case "repetition_penalty":
		return strconv.FormatFloat(d.RepetitionPenalty, 'g', -1, 64)
	}
	return "off"
}

// IgnoredWarning is a warning naming the generation_config.json keys tagpr
// does not apply, or "".
func (d SamplingDefaults) IgnoredWarning() string {
	if len(d.Ignored) == 0 {
		return ""
	}
	return fmt.Sprintf("%s sets generation keys tagpr does not implement, which are not applied (answers differ from transformers' and vLLM's with this file): %s", d.File, strings.Join(d.Ignored, ", "))
}

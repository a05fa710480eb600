package tokenize

// Int64s converts token ids to the int64 ids models take (onnx/lm).
func Int64s(ids []int) []int64 {
	out := make([]int64, len(ids))
	for i, v := range ids {
		out[i] = int64(v)
	}
	return out
}

// Ints converts model token ids back to the tokenizer's ints.
func Ints(ids []int64) []int {
	out := make([]int, len(ids))
	for i, v := range ids {
		out[i] = int(v)
	}
	return out
}

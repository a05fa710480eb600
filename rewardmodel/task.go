package rewardmodel

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tagpr/tagpr/datasets"
)

// TaskKind selects how an answer is scored against the gold output.
type TaskKind string

const (
	Classification TaskKind = "classification" // exact match after trimming: 1 or 0
	Rating         TaskKind = "rating"         // 1 − |pred − gold| / 4 on a 1–5 scale
	Generation     TaskKind = "generation"     // ROUGE-L F1
)

// ParseTaskKind accepts the names above.
func ParseTaskKind(s string) (TaskKind, error) {
	switch k := TaskKind(strings.ToLower(strings.TrimSpace(s))); k {
	case Classification, Rating, Generation:
		return k, nil
	}
	return "", fmt.Errorf("task kind %q: want classification, rating or generation", s)
}

// ParseRating reads a 1–5 rating; ok is false for anything else. It is the
// RL task reward's reading (TaskReward), which keeps R_task in [0, 1]; LaMP's
// evaluation reads ratings with ParseLaMPRating instead.
func ParseRating(s string) (float64, bool) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || v < 1 || v > 5 {
		return 0, false
	}
	return v, true
}

// ParseLaMPRating reads a rating as LaMP-3's official evaluator does
// (Python's float(), non-finite values refused): see
// datasets.ParseLaMPRating, which the import's gold check shares.
func ParseLaMPRating(s string) (float64, bool) { return datasets.ParseLaMPRating(s) }

// TaskReward is R_task of an extracted answer (not the whole completion).
// An answer that cannot be parsed for the task scores 0.
func TaskReward(kind TaskKind, answer, gold string) float64 {
	switch kind {
	case Classification:
		if strings.TrimSpace(answer) == strings.TrimSpace(gold) && strings.TrimSpace(gold) != "" {
			return 1
		}
		return 0
	case Rating:
		p, ok := ParseRating(answer)
		g, gok := ParseRating(gold)
		if !ok || !gok {
			return 0
		}
		return 1 - math.Abs(p-g)/4
	case Generation:
		return RougeL(gold, answer).F
	}
	return 0
}

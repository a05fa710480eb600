// Package rewardmodel owns the rewards: PRMU (build, train, score), the
// tag-constraint reward, task rewards and the composite reward.
//
// It knows nothing of stages or run state and must not import pipeline/.
package rewardmodel

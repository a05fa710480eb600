// Package pipeline runs the TagPR stages (chains → SFT → PRMU → RL stages →
// predict → eval → report): run state and resume. It is
// the only package that ties datasets/, tokenize/, onnx/ and rewardmodel/
// together; nothing but cmd/ imports it.
//
// RunConfig is one whole run (configs/demo.yaml is the built-in one); Run
// executes its plan in RunConfig.Out. Each stage writes below Out and marks
// itself done by the file it writes last (sft/model.onnx, prmu/summary.json,
// rl/NAME/model.onnx, …); its run.json (train.RunSettings) records the
// settings it was made with, so a rerun skips finished stages, resumes an
// unfinished one from its checkpoint, and refuses a changed setting before
// any work. The report is rebuilt from the run folder alone.
//
// Run folder:
//
//	data/TASK/{train,dev,test}.parquet   examples (lamp_example)
//	tokenizer/, base/                    a trained tokenizer, a built-in policy
//	chains/TASK.parquet                  tagged chains with verdicts (tagged_chain)
//	sft/, prmu/, rl/NAME/                models, checkpoints, logs, rollouts/*.parquet,
//	                                     TensorBoard event files (events.out.tfevents.*)
//	predictions/MODEL/TASK_SPLIT.{json,parquet}   LaMP outputs format, and rows
//	                                     (parts in TASK_SPLIT.parquet.parts/ until merged;
//	                                     RunOptions.Shard splits them over workers)
//	eval/TASK_SPLIT.json                 every model and rule on the same examples, with intervals
//	report.{html,md,json}, metrics.json  rebuilt from the folder (docs/report.md)
//
// An RL stage (RLStage, TrainRL, RLPipeline) is a run of the generic GRPO
// trainer in pipeline/grpo, which knows nothing of TagPR: the stage gives
// it the prompts, its reward as weights over named rewards (TagPRRewards:
// task, format, tag, prmu; the guided and exploratory presets), and keeps
// each step's completions as rollouts beside the checkpoints.
// docs/rl-step.md follows one step through both packages.
package pipeline

// Command tagpr is the command line of tagpr (cobra + viper): it reads the
// run config once (config.go: the -c file or the built-in configs/demo.yaml,
// then TAGPR_* environment, then flags; strictly: unknown keys and wrong
// types are refused) into pipeline.RunConfig, and calls into pipeline/,
// onnx/, tokenize/, datasets/ and rewardmodel/. It owns no logic of its own
// beyond flag parsing and printing; nothing imports it.
//
// Each area registers its subcommands from its own file (models.go,
// tokenizer.go, data.go, ...) with an init func that adds to rootCmd.
package main

// Command tagpr is the command line of tagpr (cobra + viper): it reads the
// config (file, TAGPR_* environment, flags), and calls into pipeline/, onnx/,
// tokenize/, datasets/ and rewardmodel/. It owns no logic of its own beyond
// flag parsing and printing; nothing imports it.
//
// Each area registers its subcommands from its own file (models.go,
// tokenizer.go, data.go, ...) with an init func that adds to rootCmd.
package main

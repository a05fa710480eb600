package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/onnx/ort"
)

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "demo",
		Short: "Run the main job on the built-in default (grows with the pipeline; today: check the runtime)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := initRuntime(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "demo: onnxruntime %s ready, providers %s\n", ort.Version(), strings.Join(ort.Providers(), ", "))
			return nil
		},
	})
}

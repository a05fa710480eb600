package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/onnx/ort"
)

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print tagpr's version, the ONNX Runtime version and the available execution providers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "tagpr %s\n", version)
			if err := initRuntime(); err != nil {
				return err
			}
			fmt.Fprintf(out, "onnxruntime %s (%s)\n", ort.Version(), ort.LibraryPath())
			fmt.Fprintf(out, "execution providers: %s\n", strings.Join(ort.Providers(), ", "))
			return nil
		},
	})
}

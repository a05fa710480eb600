package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/internal/buildinfo"
	"github.com/tagpr/tagpr/onnx/ort"
)

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print tagpr's version and commit, the ONNX Runtime version, the execution providers the library offers and whether a CUDA device is visible",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, buildinfo.String())
			// Inspect, not Start: version reports what is missing for CUDA
			// instead of failing on it.
			rt := runCfg.Runtime.Runtime()
			lib := rt.Library
			if strings.EqualFold(rt.Provider, "cuda") {
				gpu, err := ort.DiscoverGPU(rt.Library)
				if err != nil {
					return err
				}
				lib = gpu
			}
			if err := ort.Init(lib); err != nil {
				return err
			}
			fmt.Fprintf(out, "onnxruntime %s (%s)\n", ort.Version(), ort.LibraryPath())
			eps, err := ort.LibraryProviders()
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "execution providers: %s\n", strings.Join(eps, ", "))
			fmt.Fprintf(out, "cuda provider: %s\n", ort.CUDAProviderStatus(ort.LibraryPath()))
			fmt.Fprintf(out, "cuda device: %s\n", ort.DriverStatus().Describe())
			// What a run's numbers reproduce on (the reports' "trained on").
			fmt.Fprintf(out, "machine: %s\n", ort.Machine(rt.Options()))
			return nil
		},
	})
}

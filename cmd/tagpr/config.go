package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

func init() {
	configCmd := &cobra.Command{Use: "config", Short: "Inspect the effective configuration"}
	configCmd.AddCommand(&cobra.Command{
		Use:   "print",
		Short: "Print the effective config (file, then TAGPR_* environment, then flags) as YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := yaml.Marshal(viper.AllSettings())
			if err != nil {
				return err
			}
			if f := viper.ConfigFileUsed(); f != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "# config file: %s\n", f)
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	})
	rootCmd.AddCommand(configCmd)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/tagpr/tagpr/onnx/ort"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

var cfgFile string

var rootCmd = &cobra.Command{
	Use:           "tagpr",
	Short:         "Personalization reasoning for language models: tagged chains, SFT, staged RL with PRMU, LaMP evaluation",
	SilenceUsage:  true,
	SilenceErrors: true,
	PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
		return loadConfig(cmd)
	},
}

func init() {
	pf := rootCmd.PersistentFlags()
	pf.StringVar(&cfgFile, "config", "", "config file (YAML, TOML or JSON); TAGPR_* environment variables override it, flags override both")
	pf.String("runtime-library", "", "path to libonnxruntime.so (default: $"+ort.EnvLibraryPath+", then the models.lock cache)")
	pf.String("provider", "cpu", "execution provider: cpu or cuda (cuda needs the GPU runtime: make setup-gpu; it fails at start naming what is missing)")
	pf.Int("device", 0, "CUDA device ordinal (with --provider cuda)")
	pf.Int("threads", 0, "intra-op threads per session (0: one per core)")
	pf.String("log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text or json")
	bindFlag("runtime.library", "runtime-library")
	bindFlag("runtime.provider", "provider")
	bindFlag("runtime.device", "device")
	bindFlag("runtime.threads", "threads")
	bindFlag("log.format", "log-format")
}

// bindFlag ties a persistent flag to a config key; viper resolves flag > env > file > default.
func bindFlag(key, flag string) {
	if err := viper.BindPFlag(key, rootCmd.PersistentFlags().Lookup(flag)); err != nil {
		panic(fmt.Sprintf("bind %s to --%s: %v", key, flag, err))
	}
}

func loadConfig(cmd *cobra.Command) error {
	viper.SetEnvPrefix("TAGPR")
	viper.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	viper.AutomaticEnv()
	if cfgFile != "" {
		viper.SetConfigFile(cfgFile)
		if err := viper.ReadInConfig(); err != nil {
			return fmt.Errorf("read config %s: %w", cfgFile, err)
		}
	}
	return nil
}

// runtimeConfig is the configured runtime (runtime.cuda_libraries: extra
// folders, colon-separated, to search for the CUDA libraries).
func runtimeConfig() ort.Runtime {
	var cudaDirs []string
	if s := viper.GetString("runtime.cuda_libraries"); s != "" {
		cudaDirs = filepath.SplitList(s)
	}
	return ort.Runtime{Library: viper.GetString("runtime.library"), Provider: viper.GetString("runtime.provider"),
		Device: viper.GetInt("runtime.device"), Threads: viper.GetInt("runtime.threads"), CUDALibraries: cudaDirs}
}

// initRuntime loads ONNX Runtime as configured and declares the runtime
// every session of this process must carry (ort.Start): with cuda it fails
// here, naming what is missing, before any work.
func initRuntime() error {
	return ort.Start(runtimeConfig())
}

// sessionOptions are the configured per-session runtime options.
func sessionOptions() ort.Options {
	return runtimeConfig().Options()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rootCmd.ExecuteContext(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "tagpr: interrupted; rerun the same command to resume")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "tagpr:", err)
		os.Exit(1)
	}
}

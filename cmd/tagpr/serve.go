package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/pipeline/serve"
)

func init() {
	rootCmd.AddCommand(serveCmd())
}

func serveCmd() *cobra.Command {
	var dir, tokPath, name, host, reasoning string
	var port, kvMB int
	var drain time.Duration
	var o serve.Options
	cmd := &cobra.Command{
		Use:   "serve --model DIR",
		Short: "Serve a model over an OpenAI-compatible HTTP API (chat, completions, streaming), continuously batched",
		Long: "Serves DIR (model.onnx or onnx/model.onnx, config.json, tokenizer.json, tokenizer_config.json) at\n" +
			"http://HOST:PORT/v1 with /v1/chat/completions, /v1/completions and /v1/models, plus /health and /metrics\n" +
			"(Prometheus). Requests join the running decode batch at the next step; one model is shared by all.\n" +
			"SIGTERM or Ctrl-C: new requests are refused, running ones finish (--shutdown-timeout), then it exits 0;\n" +
			"a second one exits at once (130 for Ctrl-C, 143 for SIGTERM), cutting the running requests.",
		Example: "  tagpr serve --model out/demo/sft --port 8000\n" +
			"  curl localhost:8000/v1/chat/completions -d '{\"model\":\"sft\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return errors.New("--model DIR is required")
			}
			switch reasoning {
			case "":
			case "think":
				o.Reasoning = true
			default:
				return fmt.Errorf("--reasoning-parser %q: want think (the <think>…</think> part goes to reasoning_content) or nothing", reasoning)
			}
			if kvMB <= 0 {
				return fmt.Errorf("--kv-cache-mb %d: want > 0", kvMB)
			}
			if err := checkFlags("serve", atLeast("--port", port, 0), flagCheck{"--port", port, port <= 65535, "≤ 65535"},
				atLeast("--max-batch", o.Batcher.MaxRows, 1), atLeast("--max-concurrent", o.MaxConcurrent, 1),
				flagCheck{"--max-model-len", o.MaxModelLen, o.MaxModelLen >= 0, "≥ 0 (0: the model's positions)"},
				atLeast("--default-max-tokens", o.DefaultMaxTokens, 1),
				flagCheck{"--max-body-bytes", o.MaxBodyBytes, o.MaxBodyBytes >= 1, "≥ 1"},
				flagCheck{"--request-timeout", o.RequestTimeout, o.RequestTimeout > 0, "> 0"},
				flagCheck{"--body-timeout", o.BodyTimeout, o.BodyTimeout > 0, "> 0"},
				flagCheck{"--shutdown-timeout", drain, drain >= 0, "≥ 0"}); err != nil {
				return err
			}
			// A missing folder is named as such, not as one without a tokenizer.
			if _, err := lm.ResolveModelPath(dir); err != nil {
				return err
			}
			o.Batcher.CacheBytes = int64(kvMB) << 20
			if err := initRuntime(); err != nil {
				return err
			}
			oo := serve.OpenOptions{Name: name, Session: sessionOptions(), Half: runCfg.Runtime.HalfGeneration()}
			if tokPath == "" && hasTokenizer(dir) {
				tokPath = folderTokenizer(dir)
			}
			if tokPath != "" {
				tok, err := loadTokenizer(tokPath)
				if err != nil {
					return err
				}
				if err := applyChatTemplate(tok); err != nil {
					return err
				}
				oo.Tokenizer = tok
			}
			m, err := serve.Open(dir, oo)
			if err != nil {
				return err
			}
			defer m.Close()
			o.Logger = logger()
			if w := m.ChatWarning(); w != "" {
				o.Logger.Warn(w)
			}
			s, err := serve.New(m, o)
			if errors.Is(err, serve.ErrMaxModelLen) {
				return fmt.Errorf("serve: --max-model-len: %w", err)
			}
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				s.Close()
				return fmt.Errorf("serve: %w", err)
			}
			d := s.SamplingDefaults()
			if w := d.IgnoredWarning(); w != "" {
				o.Logger.Warn(w)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tagpr serve: model %q on http://%s/v1 (max context %d tokens, set by %s; requests that leave temperature/top_p/top_k out: %s)\n",
				m.Name, ln.Addr(), s.MaxModelLen(), s.ContextLimit(), d)
			forceExitOnSecondSignal(o.Logger, s)
			return s.Serve(cmd.Context(), ln, drain)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "model", "", "model folder (model.onnx or onnx/model.onnx, config.json, tokenizer.json)")
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer.json (or a models.lock name) instead of the folder's")
	f.StringVar(&name, "served-model-name", "", "the model id clients send (default: the folder's name)")
	f.StringVar(&host, "host", "127.0.0.1", "address to listen on (0.0.0.0 exposes the server to the network)")
	f.IntVar(&port, "port", 8000, "port (0: any free port, printed at start)")
	f.IntVar(&o.Batcher.MaxRows, "max-batch", 32, "sequences decoded together (a request with n completions takes n)")
	f.IntVar(&kvMB, "kv-cache-mb", 1024, "memory for the decode batch's KV cache, in MiB; a request waits until it fits")
	f.IntVar(&o.MaxConcurrent, "max-concurrent", 64, "requests answered at once (queued or decoding); more get 429")
	f.IntVar(&o.MaxModelLen, "max-model-len", 0, "longest prompt + completion in tokens (0: the model's positions)")
	f.IntVar(&o.DefaultMaxTokens, "default-max-tokens", 1024, "completion length when a request gives no max_tokens")
	f.Int64Var(&o.MaxBodyBytes, "max-body-bytes", 4<<20, "largest request body; larger gets 413")
	f.DurationVar(&o.BodyTimeout, "body-timeout", 30*time.Second, "longest a client may take to send a request's body (read before the request counts against --max-concurrent); then 408")
	f.DurationVar(&o.RequestTimeout, "request-timeout", 10*time.Minute, "longest a request may take, queueing included; then 504")
	f.DurationVar(&drain, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long running requests may finish before they are canceled")
	f.StringVar(&reasoning, "reasoning-parser", "", "think: put the <think>…</think> part of chat answers in reasoning_content (requests may override with separate_reasoning)")
	return cmd
}

// forceExitOnSecondSignal makes a second SIGTERM or Ctrl-C exit at once, as
// vLLM and uvicorn do: the first one (which ends the command's context)
// starts the drain, the second cuts the running requests and exits with
// 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM).
func forceExitOnSecondSignal(log *slog.Logger, s *serve.Server) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		if n := s.Running(); n > 0 {
			log.Info("a second Ctrl-C or SIGTERM exits at once, cutting the running requests", "running", n)
		}
		sig := <-sigs
		log.Error("second "+signalName(sig)+" during the drain: exiting now; the running requests were cut", "requests_cut", s.Running())
		code := 1
		if n, ok := sig.(syscall.Signal); ok {
			code = 128 + int(n)
		}
		os.Exit(code)
	}()
}

func signalName(sig os.Signal) string {
	if sig == os.Interrupt {
		return "Ctrl-C (SIGINT)"
	}
	return "SIGTERM"
}

// logger writes structured lines to stderr in the configured log format.
func logger() *slog.Logger {
	if runCfg.Log.Format == "text" || runCfg.Log.Format == "auto" && isTerminal(os.Stderr) {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, nil))
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/tokenize"
)

func init() {
	tokCmd := &cobra.Command{Use: "tokenizer", Short: "Encode, decode and train Hugging Face tokenizer.json files"}

	var tokPath string
	var special, skipSpecial bool
	encodeCmd := &cobra.Command{
		Use:   "encode [TEXT...]",
		Short: "Print the ids of TEXT (or standard input) as a JSON array",
		Long: "Print the ids of TEXT (or standard input) as a JSON array. Special tokens written in the text are " +
			"recognised; --special also adds the tokenizer's own (e.g. [CLS] … [SEP]).",
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := loadTokenizer(tokPath)
			if err != nil {
				return err
			}
			text, err := argsOrStdin(cmd, args)
			if err != nil {
				return err
			}
			ids := tok.EncodeFull(text, special).IDs
			return printJSON(cmd.OutOrStdout(), ids)
		},
	}
	encodeCmd.Flags().StringVar(&tokPath, "tokenizer", "", "tokenizer.json (tokenizer_config.json beside it is read too) or a models.lock entry name")
	encodeCmd.Flags().BoolVar(&special, "special", false, "add the tokenizer's special tokens around the text")

	decodeCmd := &cobra.Command{
		Use:   "decode [IDS...]",
		Short: "Print the text of ids given as a JSON array or as numbers (arguments or standard input)",
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := loadTokenizer(tokPath)
			if err != nil {
				return err
			}
			raw, err := argsOrStdin(cmd, args)
			if err != nil {
				return err
			}
			ids, err := parseIDs(raw)
			if err != nil {
				return err
			}
			text, err := tok.Decode(ids, skipSpecial)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), text)
			return err
		},
	}
	decodeCmd.Flags().StringVar(&tokPath, "tokenizer", "", "tokenizer.json or a models.lock entry name")
	decodeCmd.Flags().BoolVar(&skipSpecial, "skip-special", false, "leave special tokens out")

	var corpusPath, outPath string
	var vocabSize int
	var forceOut bool
	var specials []string
	trainCmd := &cobra.Command{
		Use:   "train",
		Short: "Train a byte-level BPE tokenizer on a text corpus and write its tokenizer.json (and tokenizer_config.json beside it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if corpusPath == "" || outPath == "" {
				return fmt.Errorf("tokenizer train: --corpus and --out are required")
			}
			if err := refuseExisting(outPath, forceOut); err != nil {
				return fmt.Errorf("tokenizer train: %w", err)
			}
			fh, err := os.Open(corpusPath)
			if err != nil {
				return fmt.Errorf("tokenizer train: %w", err)
			}
			defer fh.Close()
			start := time.Now()
			tok, err := tokenize.Train(tokenize.TrainOptions{Reader: fh, VocabSize: vocabSize, SpecialTokens: specials})
			if err != nil {
				return fmt.Errorf("tokenizer train on %s: %w", corpusPath, err)
			}
			// The folder only now: a refused corpus leaves nothing behind.
			if err := prepareOutput(outPath, true); err != nil {
				return fmt.Errorf("tokenizer train: %w", err)
			}
			// tokenizer.json last, an earlier one (--force) removed first: it
			// is what a rerun finds done, so a failed write (a full disk)
			// must not leave it without, or beside another's, config.
			if err := os.Remove(outPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("tokenizer train: %w", err)
			}
			if err := tok.SaveConfig(filepath.Join(filepath.Dir(outPath), "tokenizer_config.json")); err != nil {
				return err
			}
			if err := tok.Save(outPath); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trained %d tokens on %s in %.1fs -> %s\n",
				tok.VocabSize(), corpusPath, time.Since(start).Seconds(), outPath)
			return nil
		},
	}
	trainCmd.Flags().StringVar(&corpusPath, "corpus", "", "text file to learn from (read line by line)")
	trainCmd.Flags().IntVar(&vocabSize, "vocab-size", 4096, "vocabulary size including special tokens and the 256 bytes")
	trainCmd.Flags().StringVar(&outPath, "out", "", "tokenizer.json to write (missing folders are created)")
	trainCmd.Flags().BoolVar(&forceOut, "force", false, "overwrite --out if it exists")
	trainCmd.Flags().StringSliceVar(&specials, "special", []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"},
		"special tokens (ids 0..n-1)")

	tokCmd.AddCommand(encodeCmd, decodeCmd, trainCmd)
	rootCmd.AddCommand(tokCmd)
}

// loadTokenizer loads a tokenizer.json by path or, when no such file exists,
// by its models.lock entry name (e.g. qwen3-tokenizer), verified.
func loadTokenizer(path string) (*tokenize.Tokenizer, error) {
	if path == "" {
		return nil, fmt.Errorf("--tokenizer is required")
	}
	if _, err := os.Stat(path); err != nil {
		if f, lerr := openLock(false); lerr == nil {
			if e, ok := f.Lookup(path); ok {
				if err := f.Verify(e); err != nil {
					return nil, fmt.Errorf("tokenizer %s: %w (run `tagpr setup`)", path, err)
				}
				path = f.Abs(e)
			}
		}
	}
	// Every file Load reads is checked against its pin: tokenizer_config.json
	// (chat template, added tokens) changes the ids as much as tokenizer.json.
	if err := checkPinned(tokenize.Files(path)...); err != nil {
		return nil, err
	}
	return tokenize.Load(path)
}

// argsOrStdin joins the arguments, or reads standard input when there are none.
func argsOrStdin(cmd *cobra.Command, args []string) (string, error) {
	if len(args) > 0 {
		return strings.Join(args, " "), nil
	}
	b, err := io.ReadAll(cmd.InOrStdin())
	if err != nil {
		return "", fmt.Errorf("read standard input: %w", err)
	}
	return string(b), nil
}

// parseIDs accepts "[1, 2, 3]" or "1 2 3" / "1,2,3".
func parseIDs(s string) ([]int64, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		var ids []int64
		if err := json.Unmarshal([]byte(s), &ids); err != nil {
			return nil, fmt.Errorf("ids: %w", err)
		}
		return ids, nil
	}
	var ids []int64
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("ids: %q is not an integer", f)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

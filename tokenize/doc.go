// Package tokenize turns text into model ids and back: Hugging Face
// tokenizer.json files through github.com/sugarme/tokenizer (with corrected
// components where v0.3.0 is wrong), chat templates, tag tokens, batching with
// padding, truncation and masks, and a byte-level BPE trainer.
//
// It must not import onnx/, rewardmodel/ or pipeline/.
//
// Supported files: byte-level BPE (GPT-2, Llama-3, Qwen2/3 families; any
// Split regex, through regexp2 when no hand-written scanner matches it, with
// (?i) letters folded the way Hugging Face folds them: 's' matches 'ſ'),
// sentencepiece-style BPE as transformers converts it (Llama 2, Mistral,
// TinyLlama: character-level merges, byte fallback to <0xNN> tokens, unk
// fused; the legacy Prepend + Replace normalizer or a Metaspace
// pre-tokenizer with any prepend_scheme, split or not; ByteFallback and
// Metaspace decoders), sentencepiece Unigram (XLM-R, T5: Viterbi over piece
// scores read as HF's serde_json reads them, the Precompiled normalizer's
// charsmap) and WordPiece (BERT family). Anything else is refused at load
// with an error naming the component ("pre_tokenizer: unsupported
// pre_tokenizer type \"UnicodeScripts\""), and a checkpoint with only a
// sentencepiece model file gets the command that writes its tokenizer.json.
//
//	tok, err := tokenize.Load("tokenizer.json") // reads tokenizer_config.json beside it
//	ids := tok.Encode(text)                     // []int64 (ONNX's input_ids type); special tokens in text recognised, none added
//	enc := tok.EncodeFull(text, true)           // + offsets, special mask, post-processor tokens
//	text, err := tok.Decode(ids, skipSpecial)
//	all := tok.EncodeBatch(texts)               // all cores; DecodeBatch, EncodePrompts too
//	stop := tok.StopTokens(model.DefaultEOS()...) // the one stop-token rule: the model's eos ids, the tokenizer's eos, end-of-turn
//	chat, err := tok.EncodeChat(msgs, addGenerationPrompt) // ChatML, Qwen3, Llama-3, Llama 2, Mistral [INST], Zephyr; ids + AssistantMask for SFT
//	p, err := tok.EncodePrompt(parts, tokenize.DefaultPromptLayout, maxTokens) // drops profile items only
//	batch, err := tok.Pad(seqs, masks, tokenize.PadOptions{Side: tokenize.PadLeft, PadID: -1})
//	tagIDs, vocabSize := tok.RegisterTags(taxonomy) // resize the embedding to vocabSize
//	trained, err := tokenize.Train(tokenize.TrainOptions{Corpus: docs, VocabSize: 4096})
//	err = trained.Save("tokenizer.json")
//
// Encode runs tagpr's components directly; SugarmePipeline runs the same
// components inside sugarme/tokenizer's pipeline through its interfaces.
// Parity with the JS reference (@lenml/tokenizers, a port of transformers.js)
// is checked on a 5.2 MB generated multilingual corpus for Qwen3, Llama-3,
// GPT-4o, Claude, BERT and a tagpr-trained file (testdata/, recorded by
// `go run ./tokenize/internal/record`), and with HF tokenizers for two
// sentencepiece files (testdata/sentencepiece/, built by
// scripts/tokenize/sentencepiece_fixture.py; recorded by
// scripts/tokenize/hf_parity.py --record); offsets are checked against HF
// tokenizers (scripts/tokenize/hf_offsets.py), and encodings, offsets and
// decodings of adversarial texts too (scripts/tokenize/hf_edge.py). The
// Precompiled normalizer (sentencepiece's nmt_nfkc rules, as in XLM-R, T5
// and mBART files) runs as HF tokenizers runs it, grapheme by grapheme, its
// odd offsets included; its output and offsets are checked against HF's
// (scripts/tokenize/hf_normalizer.py).
//
// Known, deliberate differences from the JS reference, none of which occur
// in the parity corpus: \s follows Unicode White_Space as Rust's regex does
// (JS also counts U+FEFF and not U+0085); (?i) contractions also accept
// U+017F as Rust does; lowercasing is per character as Rust does (JS lowers
// a final capital sigma to ς); BertNormalizer spaces out CJK ideographs
// beyond the BMP (JS iterates UTF-16 units and misses them), but not
// U+2B820-U+2B91F, which HF's ranges skip. BERT's punctuation, control
// characters and nonspacing marks are HF tokenizers' (an older Unicode than
// Go's, recorded in bert_unicode.json by scripts/tokenize/hf_bert_unicode.py):
// every code point encodes as HF does. Like the JS
// reference, added tokens are found in the raw text; HF matches those flagged
// "normalized" after normalization, which differs only when the normalizer
// rewrites them.
package tokenize

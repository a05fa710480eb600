package tokenize_test

import (
	"fmt"
	"log"

	"github.com/tagpr/tagpr/tokenize"
)

// Training a byte-level BPE, registering tag tokens (each tag becomes one
// id), encoding a chat turn and decoding it back. Token ids are int64, the
// type ONNX's input_ids take.
func Example() {
	tok, err := tokenize.Train(tokenize.TrainOptions{
		Corpus:        []string{"the user likes comedy", "the user rated it 4", "comedy and drama"},
		VocabSize:     300,
		SpecialTokens: []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"},
	})
	if err != nil {
		log.Fatal(err)
	}
	tok.RegisterTags([]string{"recall_history", "conclude"})
	ids := tok.Encode("<recall_history>the user likes comedy</recall_history>")
	first, _ := tok.Token(ids[0])
	text, err := tok.Decode(ids, false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(first, "|", text)

	chat, err := tok.EncodeChat([]tokenize.Message{{Role: "user", Content: "Rate it."}, {Role: "assistant", Content: "4"}}, false)
	if err != nil {
		log.Fatal(err)
	}
	trained := 0 // the assistant's tokens: what SFT trains on
	for _, m := range chat.AssistantMask {
		if m {
			trained++
		}
	}
	fmt.Printf("%q\n%d of %d tokens are the assistant's; stop at %v\n", chat.Text, trained, len(chat.IDs), tok.StopTokens())
	// Output:
	// <recall_history> | <recall_history>the user likes comedy</recall_history>
	// "<|im_start|>user\nRate it.<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
	// 2 of 24 tokens are the assistant's; stop at [2]
}

// Package corpus generates the deterministic multilingual text that the
// tokenizer parity tests, the reference recorder and the benchmarks share.
// Same seed, same documents, byte for byte: the committed reference ids are
// checked against a regenerated corpus instead of a committed text blob.
package corpus

import (
	"math/rand/v2"
	"strconv"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// Version changes whenever the generator's output changes; fixtures record it.
const Version = 1

// Specials are added-token strings of the families under test, inserted
// into text: each tokenizer must split out its own and treat the others as
// plain text.
var Specials = []string{
	"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>",
	"<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
	"[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]",
}

var english = strings.Fields(`the of and to in is was that for on with as by at from his her they this which or
had not but are have one were all there when been their more would will an what so about if who out them
up into some than time could only other its then two may these first also new any because people year good
personalization reasoning model token user profile history answer preference review movie product rating
title abstract email subject tweet paraphrase citation headline scholarly tagging embedding reward policy`)

var contractions = []string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "n't", "'x"}

var accented = strings.Fields(`café naïve résumé façade élève déjà où über schön größer Straße Mädchen
niño señor años corazón canción São Tomé ação coração Đà Nẵng tiếng Việt người phở Kraków żółw łódź
Ångström Smørrebrød fjörður Þórr Ærø İstanbul ığdır çiçek şeker`)

var cyrillicGreek = strings.Fields(`привет мир москва язык программирование Київ їжак ελληνικά γλώσσα
καλημέρα φιλοσοφία αγάπη ψυχή`)

var otherScripts = strings.Fields(`مرحبا بالعالم العربية שלום עולם עברית नमस्ते दुनिया हिन्दी ภาษาไทย สวัสดี
こんにちは カタカナ ひらがな 東京タワー`)

var emoji = []string{
	"😀", "🎉", "👍", "👍🏽", "🚀", "❤️", "✨", "🔥", "👨‍👩‍👧‍👦", "👩🏾‍💻", "🏳️‍🌈", "🧑‍🤝‍🧑",
	"🇫🇷", "🇯🇵", "😶‍🌫️", "🤷‍♀️", "1️⃣", "©️", "™", "⌘",
}

var punct = []string{".", ",", "!", "?", ";", ":", "...", "—", "–", "(", ")", "[", "]", "{", "}", "\"", "«", "»",
	"“", "”", "‘", "’", "@", "#", "$", "%", "&", "*", "+", "=", "==", "->", "=>", "<", ">", "/", "\\", "|", "~", "^", "`", "_", "-", "--", "***"}

var spaces = []string{" ", " ", " ", " ", " ", "  ", "   ", "\t", " \t", "\n", "\n\n", "\r\n", "\r\n\r\n", "\n   ", "\n\t\t", " \n", "    ", "        ", "\u00a0", "\u3000", "\u2009"}

type gen struct {
	r *rand.Rand
	b strings.Builder
}

func (g *gen) pick(list []string) string { return list[g.r.IntN(len(list))] }

func (g *gen) cjk(n int) {
	for i := 0; i < n; i++ {
		g.b.WriteRune(rune(0x4E00 + g.r.IntN(0x9FFF-0x4E00+1)))
	}
}

func (g *gen) hangul(n int) {
	var s strings.Builder
	for i := 0; i < n; i++ {
		s.WriteRune(rune(0xAC00 + g.r.IntN(0xD7A3-0xAC00+1)))
	}
	if g.r.IntN(4) == 0 { // decomposed jamo, recomposed by NFC tokenizers
		g.b.WriteString(norm.NFD.String(s.String()))
		return
	}
	g.b.WriteString(s.String())
}

func (g *gen) number() {
	switch g.r.IntN(6) {
	case 0:
		g.b.WriteString(strconv.Itoa(g.r.IntN(10)))
	case 1:
		g.b.WriteString(strconv.Itoa(g.r.IntN(100000)))
	case 2:
		g.b.WriteString(strconv.FormatUint(g.r.Uint64(), 10))
	case 3:
		g.b.WriteString(strconv.FormatFloat(g.r.Float64()*1000, 'f', 1+g.r.IntN(4), 64))
	case 4:
		n := g.r.IntN(9000000) + 1000
		s := strconv.Itoa(n)
		for i := len(s) - 3; i > 0; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		g.b.WriteString(s)
	default:
		g.b.WriteString("٣٤٥") // Arabic-Indic digits
	}
}

func (g *gen) word() {
	switch k := g.r.IntN(100); {
	case k < 45:
		w := g.pick(english)
		switch g.r.IntN(10) {
		case 0:
			w = strings.ToUpper(w[:1]) + w[1:]
		case 1:
			w = strings.ToUpper(w)
		}
		g.b.WriteString(w)
		if g.r.IntN(8) == 0 {
			g.b.WriteString(g.pick(contractions))
		}
	case k < 55:
		w := g.pick(accented)
		if g.r.IntN(3) == 0 {
			w = norm.NFD.String(w) // NFD input
		}
		g.b.WriteString(w)
	case k < 60:
		g.b.WriteString(g.pick(cyrillicGreek))
	case k < 64:
		g.b.WriteString(g.pick(otherScripts))
	case k < 70:
		g.cjk(1 + g.r.IntN(6))
	case k < 74:
		g.hangul(1 + g.r.IntN(4))
	case k < 80:
		g.number()
	case k < 85:
		g.b.WriteString(g.pick(emoji))
	case k < 95:
		g.b.WriteString(g.pick(punct))
	case k < 97:
		g.b.WriteString(g.pick(Specials))
	case k < 98:
		// a long run: WordPiece's 100-character limit and BPE's long-word path
		g.b.WriteString(strings.Repeat(g.pick([]string{"a", "ab", "=", "-", " ", "é", "0"}), 20+g.r.IntN(120)))
	default:
		g.b.WriteString("x_" + strconv.Itoa(g.r.IntN(1000)) + "." + g.pick([]string{"go", "py", "json"}))
	}
}

// Doc generates one document of about size bytes.
func Doc(seed uint64, size int) string {
	g := &gen{r: rand.New(rand.NewPCG(seed, 0x7a67707200000001))}
	for g.b.Len() < size {
		g.word()
		if g.r.IntN(5) == 0 {
			g.b.WriteString(g.pick(spaces))
		} else if g.r.IntN(12) != 0 {
			g.b.WriteString(" ")
		}
	}
	return g.b.String()
}

// Docs returns n documents of about size bytes each, seeds 1..n.
func Docs(n, size int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = Doc(uint64(i+1), size)
	}
	return out
}

// Parity is the corpus of the parity fixtures: 5.2 MB in 320 documents.
func Parity() []string { return Docs(320, 16<<10) }

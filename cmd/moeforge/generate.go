package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
)

func init() { addCommand(newGenerateCmd) }

type generateResult struct {
	Prompt          string  `json:"prompt"`
	PromptTokens    int     `json:"prompt_tokens"`
	IDs             []int   `json:"ids"`  // generated ids, the final EOS included
	Text            string  `json:"text"` // generated text, the final EOS excluded
	Stop            string  `json:"stop"` // eos, max_new_tokens or max_position
	Seconds         float64 `json:"seconds"`
	TokensPerSecond float64 `json:"tokens_per_second"` // generated tokens per second, prompt processing included
}

func newGenerateCmd() *cobra.Command {
	var (
		prompt        string
		maxNew        int
		asJSON        bool
		tokenizerPath string
	)
	cmd := &cobra.Command{
		Use:   "generate MODEL --prompt TEXT",
		Short: "Greedy text generation with a KV cache, streamed to stdout",
		Long: `generate continues --prompt with the checkpoint MODEL: greedy decoding (the most likely
token every step) with a KV cache, so each new token costs one position of forward pass.

The prompt is tokenized with MODEL's tokenizer.json (no special tokens added; write them in the
prompt, e.g. <|im_start|>, if the model expects them). The continuation is printed on stdout as
it is produced — a character whose bytes span several tokens is printed once complete — then
a newline. Generation stops after --max-new-tokens tokens, at an end-of-sequence token
(eos_token_id of generation_config.json, else of config.json; not printed), or when the
sequence fills max_position_embeddings. A summary goes to stderr unless --quiet.

With --json nothing is streamed: one JSON document with the ids, the text, why it stopped and
the speed is printed at the end.`,
		Example: `  moeforge generate testdata/models/qwen2_moe_small --prompt "ROMEO:" --max-new-tokens 64
  moeforge generate testdata/models/qwen2_dense_small --prompt "First Citizen:" --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("prompt") {
				return errors.New("generate: --prompt TEXT is required")
			}
			if maxNew <= 0 {
				return fmt.Errorf("generate: --max-new-tokens %d must be positive", maxNew)
			}
			m, tok, err := openWithTokenizer(args[0], tokenizerPath)
			if err != nil {
				return err
			}
			defer m.Close()
			ids := tok.Encode(prompt)
			if len(ids) == 0 {
				return errors.New("generate: the prompt is empty: nothing to continue")
			}
			eos, err := model.EOSTokens(args[0], m.Config)
			if err != nil {
				return err
			}

			out := cmd.OutOrStdout()
			stream := &textStream{tok: tok, w: out}
			emit := func(id int) error {
				if asJSON || slices.Contains(eos, id) {
					return nil
				}
				return stream.add(id)
			}
			start := time.Now()
			g, err := m.Generate(cmd.Context(), ids, model.GenerateOptions{MaxNewTokens: maxNew, EOS: eos}, emit)
			if err != nil {
				return err
			}
			elapsed := time.Since(start)
			text := g.IDs
			if g.Stop == model.StopEOS {
				text = text[:len(text)-1]
			}
			res := generateResult{Prompt: prompt, PromptTokens: len(ids), IDs: g.IDs, Stop: string(g.Stop),
				Seconds: elapsed.Seconds(), TokensPerSecond: float64(len(g.IDs)) / elapsed.Seconds()}
			if asJSON {
				if res.Text, err = tok.Decode(text); err != nil {
					return err
				}
				return writeJSON(out, res)
			}
			if err := stream.finish(); err != nil {
				return failed(err)
			}
			if !global.quiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "[%d prompt tokens, %d generated, stopped at %s, %.2fs, %.1f tokens/s]\n",
					len(ids), len(g.IDs), g.Stop, res.Seconds, res.TokensPerSecond)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&prompt, "prompt", "", "text to continue")
	f.IntVar(&maxNew, "max-new-tokens", 128, "most tokens to generate")
	f.StringVar(&tokenizerPath, "tokenizer", "", "tokenizer.json or a directory holding it (default: MODEL's)")
	f.BoolVar(&asJSON, "json", false, "print one JSON document at the end instead of streaming text")
	return cmd
}

// textStream writes the text of tokens as they arrive. Byte-level BPE tokens
// can end inside a multi-byte UTF-8 character; those bytes are held back
// until the character is complete. Bytes that can never form a character are
// written as U+FFFD, one per maximal invalid subsequence, as Hugging Face's
// decoder does, so the streamed text equals decoding all the ids at once.
type textStream struct {
	tok     *tokenizer.Tokenizer
	ids     []int // the tokens so far: a decoder may depend on more than the newest
	w       io.Writer
	pending []byte
	last    byte // last byte written
	wrote   bool
}

// add writes what token id completes.
func (s *textStream) add(id int) error {
	s.ids = append(s.ids, id)
	b, err := s.tok.DecodeBytesFrom(s.ids, len(s.ids)-1)
	if err != nil {
		return err
	}
	return s.addBytes(b)
}

// addBytes writes what the bytes b of the next token complete.
func (s *textStream) addBytes(b []byte) error {
	s.pending = append(s.pending, b...)
	n := len(s.pending) - incompleteTail(s.pending)
	if err := s.write(s.pending[:n]); err != nil {
		return err
	}
	s.pending = append(s.pending[:0], s.pending[n:]...)
	return nil
}

// finish writes what is still held back, then a newline unless the text
// already ends with one.
func (s *textStream) finish() error {
	if err := s.write(s.pending); err != nil {
		return err
	}
	s.pending = s.pending[:0]
	if !s.wrote || s.last != '\n' {
		_, err := io.WriteString(s.w, "\n")
		return err
	}
	return nil
}

func (s *textStream) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, err := s.w.Write(lossyUTF8(b))
	s.last, s.wrote = b[len(b)-1], true
	return err
}

// incompleteTail returns the length of the trailing bytes of b that begin a
// UTF-8 character whose remaining bytes have not arrived yet.
func incompleteTail(b []byte) int {
	for n := 1; n <= 3 && n <= len(b); n++ {
		c := b[len(b)-n]
		if c < 0x80 {
			return 0
		}
		if c >= 0xC0 { // a lead byte: does the tail start a valid, unfinished character?
			if need := seqLen(c); need > n && validPrefix(b[len(b)-n:]) == n {
				return n
			}
			return 0
		}
	}
	return 0
}

// lossyUTF8 returns b with every maximal invalid subsequence replaced by
// U+FFFD (the Unicode "substitution of maximal subparts" practice).
func lossyUTF8(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	out := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
			b = b[max(validPrefix(b), 1):]
			continue
		}
		out = append(out, b[:size]...)
		b = b[size:]
	}
	return out
}

// seqLen is the length of the UTF-8 sequence lead byte c starts (0: not a
// lead byte).
func seqLen(c byte) int {
	switch {
	case c >= 0xC2 && c <= 0xDF:
		return 2
	case c >= 0xE0 && c <= 0xEF:
		return 3
	case c >= 0xF0 && c <= 0xF4:
		return 4
	}
	return 0
}

// validPrefix returns how many leading bytes of b are a prefix of some valid
// UTF-8 sequence (0 when b[0] cannot start one).
func validPrefix(b []byte) int {
	need := seqLen(b[0])
	if need == 0 {
		return 0
	}
	lo, hi := byte(0x80), byte(0xBF) // allowed range of the second byte
	switch b[0] {
	case 0xE0:
		lo = 0xA0
	case 0xED:
		hi = 0x9F
	case 0xF0:
		lo = 0x90
	case 0xF4:
		hi = 0x8F
	}
	n := 1
	for n < need && n < len(b) {
		c := b[n]
		if n > 1 {
			lo, hi = 0x80, 0xBF
		}
		if c < lo || c > hi {
			break
		}
		n++
	}
	return n
}

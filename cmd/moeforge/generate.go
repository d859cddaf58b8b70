package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/serve"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/tokenizer/chattemplate"
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
		chat          bool
		system        string
		sf            samplingFlags
	)
	cmd := &cobra.Command{
		Use:   "generate MODEL --prompt TEXT",
		Short: "Text generation with a KV cache, streamed to stdout (greedy or sampled, plain or chat)",
		Long: `generate continues --prompt with the checkpoint MODEL, decoding with a KV cache, so each
new token costs one position of forward pass. Decoding follows generation_config.json
(do_sample, temperature, top_p, top_k, repetition_penalty; greedy — the most likely token
every step — when it says nothing); --temperature (0 = greedy, > 0 samples), --top-p, --top-k,
--repetition-penalty override it and --seed fixes the draws.

With --chat, the prompt is the user message of a conversation (after --system, if given)
rendered with MODEL's chat template as transformers' apply_chat_template(...,
add_generation_prompt=True) does; generation stops at the end-of-turn tokens (see
"moeforge chat --help") and special tokens are not printed.

The prompt is tokenized with MODEL's tokenizer.json (no special tokens added; write them in the
prompt, e.g. <|im_start|>, if the model expects them). The continuation is printed on stdout as
it is produced — a character whose bytes span several tokens is printed once complete — then
a newline. Generation stops after --max-new-tokens tokens, at an end-of-sequence token
(eos_token_id of generation_config.json, else of config.json; not printed), or when the
sequence fills max_position_embeddings. A summary goes to stderr unless --quiet.

With --json nothing is streamed: one JSON document with the ids, the text, why it stopped and
the speed is printed at the end.`,
		Example: `  moeforge generate /tmp/mf/qwen2_moe_small --prompt "ROMEO:" --max-new-tokens 64
  moeforge generate /tmp/mf/qwen2_dense_small --prompt "First Citizen:" --json
  moeforge generate /tmp/mf/moe_gptq --chat --system "You are a helpful assistant." \
      --prompt "Give me a short introduction to large language model." --temperature 0.7 --seed 1`,
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
			gen, err := model.LoadGenerationConfig(args[0], m)
			if err != nil {
				return err
			}
			sampling, err := sf.apply(gen.Sampling)
			if err != nil {
				return err
			}
			eos := gen.EOS
			text := prompt
			skip := map[int]bool{}
			if chat {
				tmpl, err := chattemplate.Load(args[0])
				if err != nil {
					return err
				}
				var msgs []chattemplate.Message
				if system != "" {
					msgs = append(msgs, chattemplate.Message{Role: "system", Content: system})
				}
				msgs = append(msgs, chattemplate.Message{Role: "user", Content: prompt})
				if text, err = tmpl.Render(chattemplate.Messages(msgs), chattemplate.Options{AddGenerationPrompt: true}); err != nil {
					return err
				}
				eos = tmpl.StopIDs(tok, gen.EOS)
				for _, sp := range tok.SpecialTokens() {
					if id, ok := tok.TokenID(sp); ok {
						skip[id] = true
					}
				}
			} else if cmd.Flags().Changed("system") {
				return errors.New("generate: --system needs --chat")
			}
			ids := tok.Encode(text)
			if len(ids) == 0 {
				return errors.New("generate: the prompt is empty: nothing to continue")
			}

			out := cmd.OutOrStdout()
			stream := &textStream{tok: tok, w: out}
			emit := func(id int) error {
				if asJSON || slices.Contains(eos, id) || skip[id] {
					return nil
				}
				return stream.add(id)
			}
			start := time.Now()
			g, err := m.Generate(cmd.Context(), ids, model.GenerateOptions{MaxNewTokens: maxNew, EOS: eos, Sampler: model.NewSampler(sampling)}, emit)
			if err != nil {
				return err
			}
			elapsed := time.Since(start)
			textIDs := g.IDs
			if g.Stop == model.StopEOS {
				textIDs = textIDs[:len(textIDs)-1]
			}
			textIDs = slices.DeleteFunc(slices.Clone(textIDs), func(id int) bool { return skip[id] })
			res := generateResult{Prompt: prompt, PromptTokens: len(ids), IDs: g.IDs, Stop: string(g.Stop),
				Seconds: elapsed.Seconds(), TokensPerSecond: float64(len(g.IDs)) / elapsed.Seconds()}
			if asJSON {
				if res.Text, err = tok.Decode(textIDs); err != nil {
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
	f.BoolVar(&chat, "chat", false, "treat --prompt as a user message and render it with MODEL's chat template")
	f.StringVar(&system, "system", "", "system prompt (with --chat)")
	sf.register(f)
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
	n := len(s.pending) - serve.IncompleteTail(s.pending)
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
	_, err := s.w.Write(serve.LossyUTF8(b))
	s.last, s.wrote = b[len(b)-1], true
	return err
}

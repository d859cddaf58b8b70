package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/serve"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/tokenizer/chattemplate"
)

func init() { addCommand(newChatCmd) }

// samplingFlags are the decoding flags of generate and chat; unset flags
// keep what generation_config.json says.
type samplingFlags struct {
	temperature, topP, repPenalty float64
	topK                          int
	seed                          uint64
	flags                         *pflag.FlagSet
}

func (s *samplingFlags) register(f *pflag.FlagSet) {
	s.flags = f
	f.Float64Var(&s.temperature, "temperature", 1, "sampling temperature; 0 = greedy; setting it > 0 turns sampling on (default: generation_config.json)")
	f.Float64Var(&s.topP, "top-p", 1, "nucleus sampling: keep the most likely tokens up to this probability mass (default: generation_config.json)")
	f.IntVar(&s.topK, "top-k", 50, "keep only the k most likely tokens, 0 = all (default: generation_config.json)")
	f.Float64Var(&s.repPenalty, "repetition-penalty", 1, "divide the logits of tokens already in the sequence by this (default: generation_config.json)")
	f.Uint64Var(&s.seed, "seed", 0, "random seed of the sampler: the same seed gives the same text")
}

// apply overrides gen's sampling with the flags that were set.
func (s *samplingFlags) apply(o model.SamplingOptions) (model.SamplingOptions, error) {
	if s.flags.Changed("temperature") {
		o.Temperature = s.temperature
		o.DoSample = s.temperature > 0
	}
	if s.flags.Changed("top-p") {
		o.TopP = s.topP
	}
	if s.flags.Changed("top-k") {
		o.TopK = s.topK
	}
	if s.flags.Changed("repetition-penalty") {
		o.RepetitionPenalty = s.repPenalty
	}
	o.Seed = s.seed
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("sampling: %v", err)
	}
	return o, nil
}

// openChat opens MODEL's model, tokenizer, chat template and generation
// config for chatting.
func openChat(dir, tokenizerPath string) (*model.Model, *tokenizer.Tokenizer, *chattemplate.Chat, model.GenerationConfig, error) {
	var gen model.GenerationConfig
	m, tok, err := openWithTokenizer(dir, tokenizerPath)
	if err != nil {
		return nil, nil, nil, gen, err
	}
	fail := func(err error) (*model.Model, *tokenizer.Tokenizer, *chattemplate.Chat, model.GenerationConfig, error) {
		m.Close()
		return nil, nil, nil, gen, err
	}
	chat, err := chattemplate.Load(dir)
	if err != nil {
		return fail(err)
	}
	if gen, err = model.LoadGenerationConfig(dir, m); err != nil {
		return fail(err)
	}
	return m, tok, chat, gen, nil
}

func newChatCmd() *cobra.Command {
	var (
		system        string
		maxNew        int
		tokenizerPath string
		sf            samplingFlags
	)
	cmd := &cobra.Command{
		Use:   "chat MODEL",
		Short: "Talk to a model through its chat template, streamed, with history",
		Long: `chat reads your messages from stdin, one per line, renders the whole conversation with
MODEL's chat template (chat_template.jinja or tokenizer_config.json, exactly as transformers'
apply_chat_template with add_generation_prompt) and streams the reply. The KV cache of the
part of the conversation that did not change is reused, so a turn costs its new tokens only.

Commands: /system TEXT sets the system prompt and starts over, /reset forgets the
conversation, /exit (or end of input) quits.

A reply ends at an end-of-turn token: the template's (<|im_end|> for ChatML), the tokenizer's
eos_token and the eos ids of generation_config.json that are special tokens. An eos id that
names an ordinary token is ignored in chat (the shipped small models say eos_token_id 0, the
token "!", an artifact of how they were made; plain generate honours it).

Sampling follows generation_config.json (do_sample, temperature, top_p, top_k,
repetition_penalty; greedy when it says nothing); the flags override it.`,
		Example: `  moeforge chat /tmp/mf/moe_gptq --system "You are a helpful assistant."
  echo "Give me a short introduction to large language model." | moeforge chat /tmp/mf/moe_gptq --temperature 0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if maxNew <= 0 {
				return fmt.Errorf("chat: --max-new-tokens %d must be positive", maxNew)
			}
			m, tok, chat, gen, err := openChat(args[0], tokenizerPath)
			if err != nil {
				return err
			}
			defer m.Close()
			sampling, err := sf.apply(gen.Sampling)
			if err != nil {
				return err
			}
			sess := &serve.Session{M: m, Tok: tok, Chat: chat, Stop: chat.StopIDs(tok, gen.EOS), System: system}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			in := bufio.NewScanner(cmd.InOrStdin())
			in.Buffer(make([]byte, 1<<20), 1<<20)
			prompt := func() {
				if !global.quiet {
					fmt.Fprint(errOut, "> ")
				}
			}
			prompt()
			for in.Scan() {
				line := strings.TrimSpace(in.Text())
				switch {
				case line == "":
					prompt()
					continue
				case line == "/exit" || line == "/quit":
					return nil
				case line == "/reset":
					sess.Reset()
					fmt.Fprintln(errOut, "[conversation cleared]")
					prompt()
					continue
				case strings.HasPrefix(line, "/system"):
					sess.System = strings.TrimSpace(strings.TrimPrefix(line, "/system"))
					sess.Reset()
					fmt.Fprintf(errOut, "[system prompt set, conversation cleared]\n")
					prompt()
					continue
				case strings.HasPrefix(line, "/"):
					fmt.Fprintf(errOut, "[unknown command %s: /system TEXT, /reset, /exit]\n", strings.Fields(line)[0])
					prompt()
					continue
				}
				sampling.Seed++ // a fresh draw every turn, still fixed by --seed
				t, err := sess.Say(cmd.Context(), line, sampling, maxNew, func(d string) error {
					_, err := io.WriteString(out, d)
					return err
				})
				if err != nil {
					if errors.Is(err, cmd.Context().Err()) && cmd.Context().Err() != nil {
						return err
					}
					fmt.Fprintf(errOut, "\n[error: %v]\n", err)
					prompt()
					continue
				}
				fmt.Fprintln(out)
				if !global.quiet {
					tps := float64(t.Generated) / t.Elapsed.Seconds()
					fmt.Fprintf(errOut, "[%d prompt tokens (%d new), %d generated, %s, first token %.0f ms, %.1f tokens/s]\n",
						t.PromptTokens, t.NewPrompt, t.Generated, t.Finish, float64(t.FirstToken.Microseconds())/1000, tps)
				}
				prompt()
			}
			return in.Err()
		},
	}
	f := cmd.Flags()
	f.StringVar(&system, "system", "", "system prompt")
	f.IntVar(&maxNew, "max-new-tokens", 512, "most tokens per reply")
	f.StringVar(&tokenizerPath, "tokenizer", "", "tokenizer.json or a directory holding it (default: MODEL's)")
	sf.register(f)
	return cmd
}

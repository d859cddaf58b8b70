package serve

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/tokenizer/chattemplate"
)

// Session is an interactive conversation with a model: it keeps the
// messages, renders them through the chat template for every turn and
// reuses the KV cache of the longest token prefix the new prompt shares
// with the previous one, so a turn costs only its new tokens.
type Session struct {
	M        *model.Model
	Tok      *tokenizer.Tokenizer
	Chat     *chattemplate.Chat
	Stop     []int // token ids that end a reply (Chat.StopIDs)
	System   string
	Messages []chattemplate.Message
	// Vars are extra template variables (e.g. enable_thinking).
	Vars map[string]chattemplate.Value

	cache  *model.KVCache
	cached []int // the tokens whose keys and values the cache holds
}

// Turn reports one reply.
type Turn struct {
	Text         string
	PromptTokens int // tokens of the rendered conversation
	NewPrompt    int // of those, the ones not already in the cache
	Generated    int // tokens generated (the stop token included)
	Finish       string
	FirstToken   time.Duration
	Elapsed      time.Duration
}

// Reset forgets the conversation (the system prompt stays).
func (s *Session) Reset() {
	s.Messages = nil
	s.cache, s.cached = nil, nil
}

// Prompt renders the conversation so far with add_generation_prompt.
func (s *Session) Prompt() (string, error) {
	var msgs []chattemplate.Message
	if s.System != "" {
		msgs = append(msgs, chattemplate.Message{Role: "system", Content: s.System})
	}
	msgs = append(msgs, s.Messages...)
	return s.Chat.Render(chattemplate.Messages(msgs), chattemplate.Options{AddGenerationPrompt: true, Vars: s.Vars})
}

// Say adds a user message and generates the reply, calling emit with the
// text as it is produced. The reply is added to the conversation.
func (s *Session) Say(ctx context.Context, user string, sampling model.SamplingOptions, maxNew int, emit func(string) error) (Turn, error) {
	s.Messages = append(s.Messages, chattemplate.Message{Role: "user", Content: user})
	t, err := s.reply(ctx, sampling, maxNew, emit)
	if err != nil {
		s.Messages = s.Messages[:len(s.Messages)-1]
		return t, err
	}
	s.Messages = append(s.Messages, chattemplate.Message{Role: "assistant", Content: t.Text})
	return t, nil
}

func (s *Session) reply(ctx context.Context, sampling model.SamplingOptions, maxNew int, emit func(string) error) (Turn, error) {
	start := time.Now()
	var t Turn
	text, err := s.Prompt()
	if err != nil {
		return t, err
	}
	ids := s.Tok.Encode(text)
	t.PromptTokens = len(ids)
	maxPos := s.M.Config.MaxPositionEmbeddings
	if maxPos > 0 && len(ids) >= maxPos {
		return t, fmt.Errorf("the conversation has %d tokens, the model's context is %d: /reset to start over", len(ids), maxPos)
	}
	if s.cache == nil {
		s.cache = s.M.NewKVCache()
	}
	common := 0
	for common < len(ids)-1 && common < len(s.cached) && ids[common] == s.cached[common] {
		common++
	}
	s.cache.Truncate(common)
	s.cached = append(s.cached[:common], ids[common:]...)
	t.NewPrompt = len(ids) - common
	sampler := model.NewSampler(sampling)
	sampler.Observe(ids...)
	stop := map[int]bool{}
	for _, id := range s.Stop {
		stop[id] = true
	}
	skip := map[int]bool{}
	for _, sp := range s.Tok.SpecialTokens() {
		if id, ok := s.Tok.TokenID(sp); ok {
			skip[id] = true
		}
	}
	dec := &TextDecoder{Tok: s.Tok, Skip: skip}
	input := ids[common:]
	t.Finish = FinishLength
	for t.Generated < maxNew {
		logits, err := s.M.StepLogits(ctx, [][]int{input}, []*model.KVCache{s.cache})
		if err != nil {
			// the cache may hold part of this step: forget it
			s.cache, s.cached = nil, nil
			return t, err
		}
		next := sampler.Sample(logits[0])
		if t.Generated == 0 {
			t.FirstToken = time.Since(start)
		}
		t.Generated++
		s.cached = append(s.cached, next)
		if stop[next] {
			t.Finish = FinishStop
			break
		}
		d, _, err := dec.Add(next)
		if err != nil {
			return t, err
		}
		if d != "" && emit != nil {
			if err := emit(d); err != nil {
				return t, err
			}
		}
		if maxPos > 0 && s.cache.Len >= maxPos {
			break
		}
		input = []int{next}
	}
	// The last token was chosen but not run through the model: the cache
	// holds one token less than cached.
	s.cached = s.cached[:s.cache.Len]
	if rest := dec.Flush(); rest != "" && emit != nil {
		if err := emit(rest); err != nil {
			return t, err
		}
	}
	t.Text = dec.Text()
	t.Elapsed = time.Since(start)
	return t, nil
}

// ErrNoChatTemplate says a model cannot chat.
var ErrNoChatTemplate = errors.New("the model has no chat template")

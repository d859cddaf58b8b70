// Package serve is an OpenAI-compatible HTTP server for a moeforge model:
// /v1/chat/completions (the model's chat template), /v1/completions,
// /v1/models and /health, streamed with server-sent events, with
// concurrent requests sharing forward passes through an Engine
// (continuous batching).
package serve

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/tokenizer/chattemplate"
)

// Config sets the server's limits.
type Config struct {
	ModelID      string // the id clients send and /v1/models lists
	MaxBatch     int    // sequences per forward step (default 16)
	MaxQueue     int    // requests waiting beyond those (default 64); more get 429
	MaxBodyBytes int64  // request body limit (default 1 MiB); more gets 413
	// DefaultMaxTokens caps a completion that gives no max_tokens (default
	// 512, and never beyond the context).
	DefaultMaxTokens int
}

// Server serves one model.
type Server struct {
	cfg      Config
	m        *model.Model
	tok      *tokenizer.Tokenizer
	chat     *chattemplate.Chat // nil: the model has no chat template
	gen      model.GenerationConfig
	chatStop []int
	special  map[int]bool
	engine   *Engine
	mux      *http.ServeMux
	draining atomic.Bool
	inflight sync.WaitGroup
	created  int64
}

// New returns a server for m. chat may be nil (then /v1/chat/completions
// answers 400).
func New(m *model.Model, tok *tokenizer.Tokenizer, chat *chattemplate.Chat, gen model.GenerationConfig, cfg Config) *Server {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 16
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 64
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.DefaultMaxTokens <= 0 {
		cfg.DefaultMaxTokens = 512
	}
	s := &Server{cfg: cfg, m: m, tok: tok, chat: chat, gen: gen, special: map[int]bool{},
		engine: NewEngine(m, cfg.MaxBatch, cfg.MaxQueue), mux: http.NewServeMux(), created: time.Now().Unix()}
	for _, t := range tok.SpecialTokens() {
		if id, ok := tok.TokenID(t); ok {
			s.special[id] = true
		}
	}
	if chat != nil {
		s.chatStop = chat.StopIDs(tok, gen.EOS)
	}
	s.mux.HandleFunc("/health", s.health)
	s.mux.HandleFunc("/v1/models", s.models)
	s.mux.HandleFunc("/v1/chat/completions", s.completions(true))
	s.mux.HandleFunc("/v1/completions", s.completions(false))
	return s
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Engine is the server's batching engine (for its statistics).
func (s *Server) Engine() *Engine { return s.engine }

// Shutdown makes new requests fail with 503, waits for the requests in
// flight to finish (until ctx is done, when they are cancelled by the
// HTTP server's shutdown) and stops the engine.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return s.engine.Close(ctx)
}

// apiError writes an OpenAI-style error document.
func apiError(w http.ResponseWriter, status int, typ, param, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	var p any
	if param != "" {
		p = param
	}
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": fmt.Sprintf(format, args...), "type": typ, "param": p, "code": nil}})
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		apiError(w, http.StatusServiceUnavailable, "server_error", "", "the server is shutting down")
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{"object": "list", "data": []any{map[string]any{
		"id": s.cfg.ModelID, "object": "model", "created": s.created, "owned_by": "moeforge",
		"max_model_len": s.m.Config.MaxPositionEmbeddings}}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// completionRequest holds the fields of both endpoints that moeforge uses.
type completionRequest struct {
	Model               string          `json:"model"`
	Messages            json.RawMessage `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	TopK                *int            `json:"top_k"`
	RepetitionPenalty   *float64        `json:"repetition_penalty"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	N *int `json:"n"`
	// chat_template_kwargs (as vLLM takes them), e.g. {"enable_thinking": false}
	ChatTemplateKwargs json.RawMessage `json:"chat_template_kwargs"`
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func (s *Server) completions(chat bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			apiError(w, http.StatusMethodNotAllowed, "invalid_request_error", "", "use POST")
			return
		}
		if s.draining.Load() {
			apiError(w, http.StatusServiceUnavailable, "server_error", "", "the server is shutting down")
			return
		}
		s.inflight.Add(1)
		defer s.inflight.Done()
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				apiError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "", "the request body is larger than %d bytes", s.cfg.MaxBodyBytes)
				return
			}
			apiError(w, http.StatusBadRequest, "invalid_request_error", "", "reading the request body: %v", err)
			return
		}
		job, rerr := s.parseRequest(chat, body)
		if rerr != nil {
			apiError(w, rerr.status, "invalid_request_error", rerr.param, "%s", rerr.msg)
			return
		}
		prompt, maxTok, stopIDs := job.prompt, job.maxTokens, job.stopIDs
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		greq := &Request{Prompt: prompt, MaxTokens: maxTok, EOS: stopIDs, Sampler: model.NewSampler(job.sampling), Tokens: make(chan int, maxTok+1)}
		if err := s.engine.Submit(ctx, greq); err != nil {
			if errors.Is(err, ErrQueueFull) {
				apiError(w, http.StatusTooManyRequests, "rate_limit_error", "", "%v; retry later", err)
			} else {
				apiError(w, http.StatusServiceUnavailable, "server_error", "", "%v", err)
			}
			return
		}
		dec := &TextDecoder{Tok: s.tok, Stop: job.stops, Skip: s.special}
		x := &exchange{s: s, w: w, chat: chat, id: newID(map[bool]string{true: "chatcmpl-", false: "cmpl-"}[chat]),
			created: time.Now().Unix(), promptTokens: len(prompt), includeUsage: job.includeUsage}
		if job.stream {
			x.stream(greq, dec, cancel)
		} else {
			x.whole(greq, dec, cancel)
		}
	}
}

// job is a validated request: what the engine and the response need.
type job struct {
	prompt       []int
	maxTokens    int
	stopIDs      []int    // token ids that end the completion
	stops        []string // stop strings
	sampling     model.SamplingOptions
	stream       bool
	includeUsage bool
}

// requestError is a request that cannot be served: an HTTP status (4xx)
// and the OpenAI-style param and message.
type requestError struct {
	status     int
	param, msg string
}

func badRequest(param, format string, args ...any) *requestError {
	return &requestError{http.StatusBadRequest, param, fmt.Sprintf(format, args...)}
}

// maxUnboundedTokens caps max_tokens for a model whose config sets no
// context length (max_position_embeddings 0): a request's token buffer
// holds max_tokens ids.
const maxUnboundedTokens = 1 << 20

// parseRequest decodes and validates the body of a request to
// /v1/chat/completions (chat) or /v1/completions: every problem is a
// *requestError naming the field, never a panic.
func (s *Server) parseRequest(chat bool, body []byte) (*job, *requestError) {
	var req completionRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badRequest("", "malformed JSON body: %v", err)
	}
	if req.Model != "" && req.Model != s.cfg.ModelID {
		return nil, &requestError{http.StatusNotFound, "model", fmt.Sprintf("the model %q does not exist; this server serves %q", req.Model, s.cfg.ModelID)}
	}
	if req.N != nil && *req.N != 1 {
		return nil, badRequest("n", "only n=1 is supported")
	}
	var prompt, stopIDs []int
	var err error
	if chat {
		prompt, err = s.chatPrompt(&req)
		stopIDs = s.chatStop
	} else {
		prompt, err = s.textPrompt(&req)
		stopIDs = s.gen.EOS
	}
	if err != nil {
		var pe *paramError
		if errors.As(err, &pe) {
			return nil, badRequest(pe.param, "%s", pe.msg)
		}
		return nil, badRequest("", "%v", err)
	}
	stops, err := parseStop(req.Stop)
	if err != nil {
		return nil, badRequest("stop", "%v", err)
	}
	ctxLen := s.m.Config.MaxPositionEmbeddings
	maxTok := 0
	param := "max_tokens"
	switch {
	case req.MaxCompletionTokens != nil:
		maxTok, param = *req.MaxCompletionTokens, "max_completion_tokens"
	case req.MaxTokens != nil:
		maxTok = *req.MaxTokens
	}
	if maxTok < 0 || (maxTok == 0 && (req.MaxTokens != nil || req.MaxCompletionTokens != nil)) {
		return nil, badRequest(param, "%s must be at least 1, got %d", param, maxTok)
	}
	if ctxLen > 0 && len(prompt) >= ctxLen {
		return nil, badRequest(map[bool]string{true: "messages", false: "prompt"}[chat],
			"this model's maximum context length is %d tokens; the prompt has %d", ctxLen, len(prompt))
	}
	if maxTok == 0 {
		maxTok = s.cfg.DefaultMaxTokens
		if ctxLen > 0 {
			maxTok = min(maxTok, ctxLen-len(prompt))
		}
	} else if ctxLen > 0 && maxTok > ctxLen-len(prompt) { // not len(prompt)+maxTok: it can overflow
		return nil, badRequest(param,
			"this model's maximum context length is %d tokens; you requested %d tokens in the completion and the prompt has %d",
			ctxLen, maxTok, len(prompt))
	} else if ctxLen <= 0 && maxTok > maxUnboundedTokens {
		return nil, badRequest(param, "%s=%d is more than %d, the most this server generates for a model without a context length", param, maxTok, maxUnboundedTokens)
	}
	sampling, err := s.sampling(&req)
	if err != nil {
		return nil, badRequest("", "%v", err)
	}
	return &job{prompt: prompt, maxTokens: maxTok, stopIDs: stopIDs, stops: stops, sampling: sampling,
		stream: req.Stream, includeUsage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage}, nil
}

type paramError struct{ param, msg string }

func (e *paramError) Error() string { return e.msg }

func (s *Server) chatPrompt(req *completionRequest) ([]int, error) {
	if s.chat == nil {
		return nil, errors.New("this model has no chat template (chat_template.jinja or tokenizer_config.json); use /v1/completions")
	}
	if len(req.Messages) == 0 || string(req.Messages) == "null" {
		return nil, &paramError{"messages", "messages is required"}
	}
	v, err := chattemplate.FromJSON(req.Messages)
	if err != nil {
		return nil, &paramError{"messages", fmt.Sprintf("messages: %v", err)}
	}
	list, ok := v.([]chattemplate.Value)
	if !ok || len(list) == 0 {
		return nil, &paramError{"messages", "messages must be a non-empty array"}
	}
	for i, m := range list {
		d, ok := m.(*chattemplate.Dict)
		if !ok {
			return nil, &paramError{"messages", fmt.Sprintf("messages[%d] is not an object", i)}
		}
		if role, _ := d.Get("role"); role == nil {
			return nil, &paramError{"messages", fmt.Sprintf("messages[%d] has no role", i)}
		}
		// content as an array of parts: the text parts, concatenated
		if parts, ok := mget(d, "content").([]chattemplate.Value); ok {
			var b strings.Builder
			for _, p := range parts {
				if pd, ok := p.(*chattemplate.Dict); ok {
					if t, ok := mget(pd, "text").(string); ok {
						b.WriteString(t)
					}
				}
			}
			d.Set("content", b.String())
		}
	}
	opt := chattemplate.Options{AddGenerationPrompt: true, Vars: map[string]chattemplate.Value{}}
	if len(req.ChatTemplateKwargs) > 0 && string(req.ChatTemplateKwargs) != "null" {
		kv, err := chattemplate.FromJSON(req.ChatTemplateKwargs)
		if err != nil {
			return nil, &paramError{"chat_template_kwargs", err.Error()}
		}
		if d, ok := kv.(*chattemplate.Dict); ok {
			for _, k := range d.Keys() {
				opt.Vars[k] = mget(d, k)
			}
		}
	}
	text, err := s.chat.Render(list, opt)
	if err != nil {
		return nil, &paramError{"messages", err.Error()}
	}
	return s.tok.Encode(text), nil
}

func mget(d *chattemplate.Dict, k string) chattemplate.Value {
	v, _ := d.Get(k)
	return v
}

func (s *Server) textPrompt(req *completionRequest) ([]int, error) {
	var p string
	if err := json.Unmarshal(req.Prompt, &p); err != nil {
		var list []string
		if err2 := json.Unmarshal(req.Prompt, &list); err2 != nil || len(list) != 1 {
			var ids []int
			if err3 := json.Unmarshal(req.Prompt, &ids); err3 != nil || len(ids) == 0 {
				return nil, &paramError{"prompt", "prompt must be a string, an array of one string, or an array of token ids"}
			}
			for _, id := range ids {
				if id < 0 || id >= s.m.Config.VocabSize {
					return nil, &paramError{"prompt", fmt.Sprintf("token id %d is outside the vocabulary [0, %d)", id, s.m.Config.VocabSize)}
				}
			}
			return ids, nil
		}
		p = list[0]
	}
	ids := s.tok.Encode(p)
	if len(ids) == 0 {
		return nil, &paramError{"prompt", "the prompt is empty"}
	}
	return ids, nil
}

func parseStop(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("stop must be a string or an array of strings")
	}
	if len(many) > 4 {
		return nil, errors.New("stop takes at most 4 sequences")
	}
	return many, nil
}

// sampling starts from generation_config.json and applies the request's
// fields; a temperature above 0 turns sampling on, 0 is greedy.
func (s *Server) sampling(req *completionRequest) (model.SamplingOptions, error) {
	o := s.gen.Sampling
	if req.Temperature != nil {
		o.Temperature = *req.Temperature
		o.DoSample = *req.Temperature > 0
	}
	if req.TopP != nil {
		o.TopP = *req.TopP
	}
	if req.TopK != nil {
		o.TopK = max(*req.TopK, 0)
	}
	if req.RepetitionPenalty != nil {
		o.RepetitionPenalty = *req.RepetitionPenalty
	}
	if req.Seed != nil {
		o.Seed = uint64(*req.Seed)
	} else {
		var b [8]byte
		rand.Read(b[:])
		for _, c := range b {
			o.Seed = o.Seed<<8 | uint64(c)
		}
	}
	return o, o.Validate()
}

// exchange writes one request's response.
type exchange struct {
	s            *Server
	w            http.ResponseWriter
	chat         bool
	id           string
	created      int64
	promptTokens int
	includeUsage bool
}

func (x *exchange) usage(completion int) map[string]any {
	return map[string]any{"prompt_tokens": x.promptTokens, "completion_tokens": completion, "total_tokens": x.promptTokens + completion}
}

// collect reads tokens until the engine ends the sequence or a stop string
// appears, calling delta with each new piece of text.
func (x *exchange) collect(r *Request, dec *TextDecoder, cancel func(), delta func(string) error) (n int, finish string, err error) {
	for id := range r.Tokens {
		n++
		if r.eos[id] {
			continue // the eos token ends the text; it is not part of it
		}
		d, stopped, derr := dec.Add(id)
		if derr != nil {
			cancel()
			return n, "", derr
		}
		if d != "" {
			if err := delta(d); err != nil {
				cancel() // the client went away
				return n, "", err
			}
		}
		if stopped {
			cancel()
			for range r.Tokens {
			}
			return n, FinishStop, nil
		}
	}
	if r.Err != nil {
		return n, "", r.Err
	}
	if rest := dec.Flush(); rest != "" {
		if err := delta(rest); err != nil {
			return n, "", err
		}
	}
	return n, r.Finish, nil
}

func (x *exchange) whole(r *Request, dec *TextDecoder, cancel func()) {
	var text strings.Builder
	n, finish, err := x.collect(r, dec, cancel, func(d string) error { text.WriteString(d); return nil })
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return // the client is gone
		}
		apiError(x.w, http.StatusInternalServerError, "server_error", "", "generation failed: %v", err)
		return
	}
	var choice map[string]any
	if x.chat {
		choice = map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": text.String()},
			"finish_reason": finish, "logprobs": nil}
	} else {
		choice = map[string]any{"index": 0, "text": text.String(), "finish_reason": finish, "logprobs": nil}
	}
	obj := "text_completion"
	if x.chat {
		obj = "chat.completion"
	}
	writeJSON(x.w, map[string]any{"id": x.id, "object": obj, "created": x.created, "model": x.s.cfg.ModelID,
		"choices": []any{choice}, "usage": x.usage(n)})
}

func (x *exchange) stream(r *Request, dec *TextDecoder, cancel func()) {
	h := x.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	x.w.WriteHeader(http.StatusOK)
	flusher, _ := x.w.(http.Flusher)
	obj := "text_completion"
	if x.chat {
		obj = "chat.completion.chunk"
	}
	send := func(choices []any, usage map[string]any) error {
		doc := map[string]any{"id": x.id, "object": obj, "created": x.created, "model": x.s.cfg.ModelID, "choices": choices}
		if x.includeUsage {
			doc["usage"] = nil
			if usage != nil {
				doc["usage"] = usage
			}
		}
		data, _ := json.Marshal(doc)
		if _, err := fmt.Fprintf(x.w, "data: %s\n\n", data); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	piece := func(text string, finish any) map[string]any {
		if x.chat {
			delta := map[string]any{}
			if text != "" {
				delta["content"] = text
			}
			return map[string]any{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": nil}
		}
		return map[string]any{"index": 0, "text": text, "finish_reason": finish, "logprobs": nil}
	}
	if x.chat {
		if err := send([]any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": ""}, "finish_reason": nil, "logprobs": nil}}, nil); err != nil {
			cancel()
			return
		}
	}
	n, finish, err := x.collect(r, dec, cancel, func(d string) error { return send([]any{piece(d, nil)}, nil) })
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			data, _ := json.Marshal(map[string]any{"error": map[string]any{"message": "generation failed: " + err.Error(), "type": "server_error"}})
			fmt.Fprintf(x.w, "data: %s\n\n", data)
		}
		return
	}
	if err := send([]any{piece("", finish)}, nil); err != nil {
		return
	}
	if x.includeUsage {
		if err := send([]any{}, x.usage(n)); err != nil {
			return
		}
	}
	fmt.Fprint(x.w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

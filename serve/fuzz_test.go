package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/tokenizer/chattemplate"
)

// fuzzCtx is the context length the fuzz server's model claims, small so
// that a request can never ask for a long generation.
const fuzzCtx = 48

var (
	fuzzOnce   sync.Once
	fuzzServer *Server
	fuzzErr    error
)

// tinyServer is a server over the fixture qwen2_moe_tiny (hidden 64, the
// test tokenizer and chat template), shared by the fuzz targets of one
// test binary.
func tinyServer(tb testing.TB) *Server {
	tb.Helper()
	dir := filepath.Join(fixturetest.Dir(tb, "fixtures/qwen2_moe_tiny"), "model")
	fuzzOnce.Do(func() {
		m, err := model.Open(dir)
		if err != nil {
			fuzzErr = err
			return
		}
		m.Config.MaxPositionEmbeddings = fuzzCtx
		tok, err := tokenizer.Load(dir)
		if err != nil {
			fuzzErr = err
			return
		}
		chat, err := chattemplate.Load(dir)
		if err != nil {
			fuzzErr = err
			return
		}
		gen, err := model.LoadGenerationConfig(dir, m)
		if err != nil {
			fuzzErr = err
			return
		}
		fuzzServer = New(m, tok, chat, gen, Config{ModelID: "tiny", DefaultMaxTokens: 4, MaxBodyBytes: 1 << 16})
	})
	if fuzzErr != nil {
		tb.Fatal(fuzzErr)
	}
	return fuzzServer
}

// requestSeeds are request bodies of both endpoints: valid ones and the
// bad ones TestErrors sends.
var requestSeeds = []struct {
	chat bool
	body string
}{
	{true, `{"messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hi"}], "max_tokens": 3}`},
	{true, `{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "stream": true, "stream_options": {"include_usage": true}, "max_completion_tokens": 2}`},
	{true, `{"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {"enable_thinking": false}, "stop": ["\n", "a"], "temperature": 0.7, "top_p": 0.9, "top_k": 5, "seed": 3}`},
	{true, `{"messages": [{"role": "user", "content": "x"}], "repetition_penalty": 1.3, "n": 1, "stop": "e", "temperature": 0}`},
	{true, `{"messages": [`},
	{true, `[1, 2]`},
	{true, `{"messages": []}`},
	{true, `{"messages": [{"content": "no role"}]}`},
	{true, `{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}`},
	{false, `{"prompt": "First Citizen:", "max_tokens": 4, "temperature": 1.0, "seed": 5}`},
	{false, `{"prompt": ["ROMEO:"], "stream": true, "max_tokens": 2}`},
	{false, `{"prompt": [1, 2, 3, 1023], "max_tokens": 1, "stop": ["a", "b", "c", "d"]}`},
	{false, `{"prompt": "a", "max_tokens": 0}`},
	{false, `{"prompt": "a", "temperature": -1}`},
	{false, `{"prompt": "a", "stop": 5}`},
	{false, `{"prompt": "a", "n": 2}`},
	{false, `{"prompt": {"x": 1}}`},
	{false, `{"prompt": [-1]}`},
	{false, `{"prompt": "a", "max_tokens": 100}`},
	{false, `{"prompt": "a", "max_tokens": 9223372036854775807}`}, // was accepted (the sum with the prompt overflowed), then make(chan) panicked
	{true, `{"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 9223372036854775800}`},
	{false, `{"prompt": "a", "top_p": 1.5, "top_k": -3, "repetition_penalty": -2}`},
}

// FuzzParseRequest: whatever the body, parseRequest returns a job the
// engine can run or a 4xx error naming the problem, never panics.
func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add(s.chat, []byte(s.body))
	}
	s := tinyServer(f)
	vocab := s.m.Config.VocabSize
	f.Fuzz(func(t *testing.T, chat bool, body []byte) {
		j, rerr := s.parseRequest(chat, body)
		if rerr != nil {
			if rerr.status < 400 || rerr.status > 499 || rerr.msg == "" {
				t.Fatalf("error %d %q for %q", rerr.status, rerr.msg, body)
			}
			return
		}
		if len(j.prompt) == 0 || j.maxTokens < 1 || j.maxTokens > fuzzCtx-len(j.prompt) || len(j.stops) > 4 { // no sum: it could overflow
			t.Fatalf("accepted %q: prompt %d tokens, max_tokens %d, %d stops", body, len(j.prompt), j.maxTokens, len(j.stops))
		}
		for _, id := range j.prompt {
			if id < 0 || id >= vocab {
				t.Fatalf("accepted %q with token id %d outside [0, %d)", body, id, vocab)
			}
		}
		if err := j.sampling.Validate(); err != nil {
			t.Fatalf("accepted %q with sampling %+v: %v", body, j.sampling, err)
		}
	})
}

// FuzzHandler sends the body to the whole handler (generation included)
// and checks the answer: a 4xx OpenAI error document, a whole completion
// or an event stream that ends with [DONE].
func FuzzHandler(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add(s.chat, []byte(s.body))
	}
	h := tinyServer(f).Handler()
	f.Fuzz(func(t *testing.T, chat bool, body []byte) {
		path := "/v1/completions"
		if chat {
			path = "/v1/chat/completions"
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
		out := w.Body.Bytes()
		switch {
		case w.Code >= 400 && w.Code <= 499:
			var e struct {
				Error struct {
					Message string `json:"message"`
					Type    string `json:"type"`
				} `json:"error"`
			}
			if err := json.Unmarshal(out, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("%d for %q is not an OpenAI error document: %q", w.Code, body, out)
			}
		case w.Code != http.StatusOK:
			t.Fatalf("status %d for %q: %s", w.Code, body, out)
		case strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream"):
			sc := bufio.NewScanner(bytes.NewReader(out))
			sc.Buffer(nil, 1<<20)
			last := ""
			for sc.Scan() {
				line := sc.Text()
				if line == "" {
					continue
				}
				data, ok := strings.CutPrefix(line, "data: ")
				if !ok {
					t.Fatalf("stream for %q: line %q is not an event", body, line)
				}
				if data != "[DONE]" && !json.Valid([]byte(data)) {
					t.Fatalf("stream for %q: event %q is not JSON", body, data)
				}
				if strings.Contains(data, `"error"`) && strings.HasPrefix(data, `{"error"`) {
					t.Fatalf("stream for %q failed: %s", body, data)
				}
				last = data
			}
			if last != "[DONE]" {
				t.Fatalf("stream for %q does not end with [DONE]: %q", body, out)
			}
		default:
			var r struct {
				Choices []struct {
					FinishReason string `json:"finish_reason"`
				} `json:"choices"`
			}
			if err := json.Unmarshal(out, &r); err != nil || len(r.Choices) != 1 || r.Choices[0].FinishReason == "" {
				t.Fatalf("200 for %q is not a completion: %q", body, out)
			}
		}
	})
}

// TestUnboundedContext: a model whose config sets no context length
// (max_position_embeddings 0) takes any prompt, but max_tokens is still
// bounded: the token buffer of a request holds max_tokens ids.
func TestUnboundedContext(t *testing.T) {
	dir := filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny"), "model")
	m, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.Config.MaxPositionEmbeddings = 0
	base := tinyServer(t)
	s := New(m, base.tok, base.chat, base.gen, Config{ModelID: "tiny"})
	defer s.Shutdown(context.Background())
	for _, body := range []string{`{"prompt": "a", "max_tokens": 1000000000000000}`, `{"prompt": "a", "max_tokens": 9223372036854775807}`} {
		if _, rerr := s.parseRequest(false, []byte(body)); rerr == nil || rerr.status != http.StatusBadRequest || rerr.param != "max_tokens" {
			t.Errorf("%s: %+v, want a 400 naming max_tokens", body, rerr)
		}
	}
	j, rerr := s.parseRequest(false, []byte(`{"prompt": "a", "max_tokens": 1000}`))
	if rerr != nil || j.maxTokens != 1000 {
		t.Errorf("max_tokens 1000 without a context limit: %+v %+v", j, rerr)
	}
}

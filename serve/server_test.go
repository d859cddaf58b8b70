package serve_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/serve"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/tokenizer/chattemplate"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fixturetest.Cleanup()
	os.Exit(code)
}

type fixtureModel struct {
	dir  string
	m    *model.Model
	tok  *tokenizer.Tokenizer
	chat *chattemplate.Chat
	gen  model.GenerationConfig
}

func openFixture(t testing.TB, rel string) *fixtureModel {
	t.Helper()
	return openDir(t, fixturetest.Dir(t, rel))
}

func openDir(t testing.TB, dir string) *fixtureModel {
	t.Helper()
	m, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	chat, err := chattemplate.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	gen, err := model.LoadGenerationConfig(dir, m)
	if err != nil {
		t.Fatal(err)
	}
	return &fixtureModel{dir, m, tok, chat, gen}
}

func newTestServer(t testing.TB, f *fixtureModel, cfg serve.Config) (*serve.Server, *httptest.Server) {
	t.Helper()
	if cfg.ModelID == "" {
		cfg.ModelID = "small"
	}
	s := serve.New(f.m, f.tok, f.chat, f.gen, cfg)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, hs
}

func post(t testing.TB, url, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

var seedMessages = `[{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Give me a short introduction to large language model."}]`

// greedyReference is the chat reply computed with the libraries directly:
// render, encode, greedy Generate stopping at the chat stop ids.
func greedyReference(t *testing.T, f *fixtureModel, n int) (string, int, string) {
	t.Helper()
	msgs, _ := chattemplate.FromJSON([]byte(seedMessages))
	text, err := f.chat.Render(msgs.([]chattemplate.Value), chattemplate.Options{AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	ids := f.tok.Encode(text)
	stop := f.chat.StopIDs(f.tok, f.gen.EOS)
	g, err := f.m.Generate(context.Background(), ids, model.GenerateOptions{MaxNewTokens: n, EOS: stop}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := g.IDs
	finish := serve.FinishLength
	if g.Stop == model.StopEOS {
		out, finish = out[:len(out)-1], serve.FinishStop
	}
	s, err := f.tok.Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	return s, len(ids), finish
}

type chatResponse struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

// TestChatCompletion: the seed's request (system + user) answered greedily
// gives the text the libraries compute, with usage; streamed, the deltas
// concatenate to the same text and the stream ends with [DONE].
func TestChatCompletion(t *testing.T) {
	f := openFixture(t, "models/qwen2_moe_small")
	_, hs := newTestServer(t, f, serve.Config{})
	want, promptTokens, finish := greedyReference(t, f, 24)

	resp, body := post(t, hs.URL+"/v1/chat/completions", `{"model": "small", "messages": `+seedMessages+`, "temperature": 0, "max_tokens": 24}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var r chatResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if r.Object != "chat.completion" || r.Model != "small" || len(r.Choices) != 1 {
		t.Fatalf("response %s", body)
	}
	c := r.Choices[0]
	if c.Message.Role != "assistant" || c.Message.Content != want || c.FinishReason != finish {
		t.Errorf("reply %q (%s), want %q (%s)", c.Message.Content, c.FinishReason, want, finish)
	}
	if r.Usage.PromptTokens != promptTokens || r.Usage.TotalTokens != r.Usage.PromptTokens+r.Usage.CompletionTokens || r.Usage.CompletionTokens == 0 {
		t.Errorf("usage %+v, prompt has %d tokens", r.Usage, promptTokens)
	}

	// streamed, with usage
	text, usage, done := stream(t, hs.URL+"/v1/chat/completions", `{"messages": `+seedMessages+`, "temperature": 0, "max_completion_tokens": 24, "stream": true, "stream_options": {"include_usage": true}}`)
	if text != want || !done {
		t.Errorf("streamed %q (done %v), want %q", text, done, want)
	}
	if usage == nil || usage["prompt_tokens"] != float64(promptTokens) {
		t.Errorf("stream usage %v", usage)
	}
}

// stream reads an SSE response: the concatenated content deltas, the usage
// chunk and whether it ended with [DONE].
func stream(t *testing.T, url, body string) (string, map[string]any, bool) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		data, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), data)
	}
	var text strings.Builder
	var usage map[string]any
	done := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if done {
			t.Errorf("data after [DONE]: %q", line)
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not an SSE data line: %q", line)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
				Text string `json:"text"`
			} `json:"choices"`
			Usage map[string]any `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		for _, c := range chunk.Choices {
			text.WriteString(c.Delta.Content + c.Text)
		}
		if chunk.Usage != nil {
			usage = chunk.Usage
		}
	}
	return text.String(), usage, done
}

// TestCompletionsAndStop: /v1/completions continues a text prompt as
// Generate does; a stop string ends the text before it.
func TestCompletionsAndStop(t *testing.T) {
	f := openFixture(t, "models/qwen2_moe_small")
	_, hs := newTestServer(t, f, serve.Config{})
	ids := f.tok.Encode("ROMEO:")
	g, err := f.m.Generate(context.Background(), ids, model.GenerateOptions{MaxNewTokens: 32, EOS: f.gen.EOS}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := g.IDs
	if g.Stop == model.StopEOS {
		out = out[:len(out)-1]
	}
	want, _ := f.tok.Decode(out)
	resp, body := post(t, hs.URL+"/v1/completions", `{"prompt": "ROMEO:", "max_tokens": 32, "temperature": 0}`)
	var r chatResponse
	json.Unmarshal(body, &r)
	if resp.StatusCode != 200 || len(r.Choices) != 1 || r.Choices[0].Text != want {
		t.Fatalf("status %d, body %s; want text %q", resp.StatusCode, body, want)
	}
	// stop at the first space after a few characters of the reference
	i := strings.Index(want[3:], " ")
	if i < 0 {
		t.Fatalf("reference %q has no space to stop at", want)
	}
	stopAt := want[3+i : 3+i+2]
	for _, streamed := range []bool{false, true} {
		body := fmt.Sprintf(`{"prompt": "ROMEO:", "max_tokens": 32, "temperature": 0, "stop": [%q, "zzzz"], "stream": %v}`, stopAt, streamed)
		var got string
		if streamed {
			var done bool
			got, _, done = stream(t, hs.URL+"/v1/completions", body)
			if !done {
				t.Error("stream did not end with [DONE]")
			}
		} else {
			_, data := post(t, hs.URL+"/v1/completions", body)
			var r chatResponse
			json.Unmarshal(data, &r)
			if len(r.Choices) != 1 || r.Choices[0].FinishReason != "stop" {
				t.Fatalf("stop: %s", data)
			}
			got = r.Choices[0].Text
		}
		if wantStop := want[:strings.Index(want, stopAt)]; got != wantStop {
			t.Errorf("streamed=%v: text with stop %q is %q, want %q", streamed, stopAt, got, wantStop)
		}
	}
}

// TestCompletionEOS: an eos id of generation_config.json ends a text
// completion (finish_reason stop) and is not part of the text.
func TestCompletionEOS(t *testing.T) {
	f := openFixture(t, "models/qwen2_moe_small")
	ids := f.tok.Encode("ROMEO:")
	g, err := f.m.Generate(context.Background(), ids, model.GenerateOptions{MaxNewTokens: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	eos := g.IDs[3]
	f.gen.EOS = []int{eos}
	want, _ := f.tok.Decode(g.IDs[:3])
	_, hs := newTestServer(t, f, serve.Config{})
	for _, streamed := range []bool{false, true} {
		body := fmt.Sprintf(`{"prompt": "ROMEO:", "max_tokens": 8, "temperature": 0, "stream": %v}`, streamed)
		var got string
		if streamed {
			got, _, _ = stream(t, hs.URL+"/v1/completions", body)
		} else {
			_, data := post(t, hs.URL+"/v1/completions", body)
			var r chatResponse
			json.Unmarshal(data, &r)
			if len(r.Choices) != 1 || r.Choices[0].FinishReason != "stop" || r.Usage.CompletionTokens != 4 {
				t.Fatalf("eos: %s", data)
			}
			got = r.Choices[0].Text
		}
		if got != want {
			t.Errorf("streamed=%v: text %q, want %q (without the eos token %d)", streamed, got, want, eos)
		}
	}
}

// TestSeededSampling: the same seed gives the same text; temperature 0 is
// greedy whatever the seed.
func TestSeededSampling(t *testing.T) {
	f := openFixture(t, "models/qwen2_moe_small")
	_, hs := newTestServer(t, f, serve.Config{})
	get := func(extra string) string {
		_, body := post(t, hs.URL+"/v1/completions", `{"prompt": "First Citizen:", "max_tokens": 16`+extra+`}`)
		var r chatResponse
		if err := json.Unmarshal(body, &r); err != nil || len(r.Choices) != 1 {
			t.Fatalf("%s", body)
		}
		return r.Choices[0].Text
	}
	a, b := get(`, "temperature": 1.0, "seed": 5`), get(`, "temperature": 1.0, "seed": 5`)
	if a != b {
		t.Errorf("seed 5 twice: %q vs %q", a, b)
	}
	if c := get(`, "temperature": 1.0, "seed": 6`); c == a {
		t.Logf("seeds 5 and 6 drew the same 16 tokens %q (possible but unlikely)", a)
	}
	if g1, g2 := get(`, "temperature": 0, "seed": 1`), get(`, "temperature": 0, "seed": 2`); g1 != g2 {
		t.Errorf("greedy depends on the seed: %q vs %q", g1, g2)
	}
}

// TestErrors: OpenAI-style errors with the right status for bad requests.
func TestErrors(t *testing.T) {
	f := openFixture(t, "models/qwen2_moe_small")
	_, hs := newTestServer(t, f, serve.Config{MaxBodyBytes: 4096})
	ctxLen := f.m.Config.MaxPositionEmbeddings
	for _, c := range []struct {
		name, path, body string
		status           int
		param            string
	}{
		{"malformed JSON", "/v1/chat/completions", `{"messages": [`, 400, ""},
		{"not an object", "/v1/chat/completions", `[1, 2]`, 400, ""},
		{"no messages", "/v1/chat/completions", `{"model": "small"}`, 400, "messages"},
		{"empty messages", "/v1/chat/completions", `{"messages": []}`, 400, "messages"},
		{"unknown model", "/v1/chat/completions", `{"model": "gpt-4", "messages": ` + seedMessages + `}`, 404, "model"},
		{"max_tokens beyond context", "/v1/chat/completions", fmt.Sprintf(`{"messages": %s, "max_tokens": %d}`, seedMessages, ctxLen), 400, "max_tokens"},
		{"max_completion_tokens beyond context", "/v1/chat/completions", fmt.Sprintf(`{"messages": %s, "max_completion_tokens": %d}`, seedMessages, ctxLen), 400, "max_completion_tokens"},
		{"max_tokens overflowing the context check", "/v1/completions", `{"prompt": "a", "max_tokens": 9223372036854775807}`, 400, "max_tokens"},
		{"max_tokens 0", "/v1/completions", `{"prompt": "a", "max_tokens": 0}`, 400, "max_tokens"},
		{"negative temperature", "/v1/completions", `{"prompt": "a", "temperature": -1}`, 400, ""},
		{"bad stop", "/v1/completions", `{"prompt": "a", "stop": 5}`, 400, "stop"},
		{"n > 1", "/v1/completions", `{"prompt": "a", "n": 2}`, 400, "n"},
		{"bad prompt", "/v1/completions", `{"prompt": {"x": 1}}`, 400, "prompt"},
		{"body too large", "/v1/completions", `{"prompt": "` + strings.Repeat("a", 5000) + `"}`, 413, ""},
	} {
		resp, body := post(t, hs.URL+c.path, c.body)
		var e struct {
			Error struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Param   *string `json:"param"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Errorf("%s: not an OpenAI error document: %s", c.name, body)
		}
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, resp.StatusCode, c.status, body)
		}
		if c.param != "" && (e.Error.Param == nil || *e.Error.Param != c.param) {
			t.Errorf("%s: param %v, want %q", c.name, e.Error.Param, c.param)
		}
	}
	resp, err := http.Get(hs.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var models struct {
		Data []struct{ ID string } `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&models)
	resp.Body.Close()
	if d := cmp.Diff([]struct{ ID string }{{"small"}}, models.Data); d != "" {
		t.Errorf("/v1/models (-want +got):\n%s", d)
	}
}

// TestConcurrentBatching: 8 concurrent greedy requests each get the reply
// they get alone, and they share forward steps (well over one sequence
// per step on average).
func TestConcurrentBatching(t *testing.T) {
	f := openFixture(t, "models/qwen2_moe_small")
	s, hs := newTestServer(t, f, serve.Config{})
	prompts := []string{"ROMEO:", "JULIET:", "First Citizen:", "KING HENRY:", "To be", "O, ", "What", "MENENIUS:"}
	alone := make([]string, len(prompts))
	for i, p := range prompts {
		_, body := post(t, hs.URL+"/v1/completions", fmt.Sprintf(`{"prompt": %q, "max_tokens": 20, "temperature": 0}`, p))
		var r chatResponse
		json.Unmarshal(body, &r)
		alone[i] = r.Choices[0].Text
	}
	before := s.Engine().Stats()
	got := make([]string, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, body := post(t, hs.URL+"/v1/completions", fmt.Sprintf(`{"prompt": %q, "max_tokens": 20, "temperature": 0}`, p))
			var r chatResponse
			json.Unmarshal(body, &r)
			if len(r.Choices) == 1 {
				got[i] = r.Choices[0].Text
			}
		}()
	}
	wg.Wait()
	if d := cmp.Diff(alone, got); d != "" {
		t.Errorf("concurrent replies differ from the replies alone (-alone +concurrent):\n%s", d)
	}
	after := s.Engine().Stats()
	steps, seqSteps := after.Steps-before.Steps, after.MeanBatch*float64(after.Steps)-before.MeanBatch*float64(before.Steps)
	if mean := seqSteps / float64(steps); mean < 3 {
		t.Errorf("%.2f sequences per forward step over %d steps: requests were not batched", mean, steps)
	} else {
		t.Logf("%.2f sequences per step over %d steps", mean, steps)
	}
}

// TestDisconnectCancels: a client that goes away mid-stream stops its
// generation (the engine runs no more steps for it).
func TestDisconnectCancels(t *testing.T) {
	f := openFixture(t, "models/qwen2_moe_small")
	s, hs := newTestServer(t, f, serve.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/v1/completions",
		bytes.NewReader([]byte(`{"prompt": "ROMEO:", "max_tokens": 400, "temperature": 0, "stream": true}`)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ { // a few chunks arrive
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.Engine().Stats().Active != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := s.Engine().Stats()
	if st.Active != 0 {
		t.Fatalf("still %d active sequences after the client left", st.Active)
	}
	if st.Tokens >= 400 {
		t.Errorf("generated %d tokens: the cancelled request ran to its end", st.Tokens)
	}
}

// TestQueueFullAndShutdown: requests beyond batch + queue get 429; after
// Shutdown new requests get 503 while the running ones finish.
func TestQueueFullAndShutdown(t *testing.T) {
	f := openFixture(t, "models/qwen2_moe_small")
	s, hs := newTestServer(t, f, serve.Config{MaxBatch: 1, MaxQueue: 1})
	var wg sync.WaitGroup
	codes := make(chan int, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := post(t, hs.URL+"/v1/completions", `{"prompt": "ROMEO:", "max_tokens": 60, "temperature": 0}`)
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	if n[429] == 0 || n[200] == 0 || n[200]+n[429] != 6 {
		t.Errorf("status counts %v: want some 200 and some 429", n)
	}
	// shutdown: a long request in flight finishes, a new one gets 503
	done := make(chan int)
	go func() {
		resp, _ := post(t, hs.URL+"/v1/completions", `{"prompt": "ROMEO:", "max_tokens": 40, "temperature": 0}`)
		done <- resp.StatusCode
	}()
	for s.Engine().Stats().Active == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	shut := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	time.Sleep(20 * time.Millisecond)
	if resp, body := post(t, hs.URL+"/v1/completions", `{"prompt": "a"}`); resp.StatusCode != 503 {
		t.Errorf("during shutdown: status %d (%s), want 503", resp.StatusCode, body)
	}
	if code := <-done; code != 200 {
		t.Errorf("request in flight at shutdown: status %d, want 200", code)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestNoChatTemplate: a model without a chat template still serves text
// completions; chat requests get a 400 that says why.
func TestNoChatTemplate(t *testing.T) {
	f := openFixture(t, "models/qwen2_moe_small")
	g := *f
	g.chat = nil
	_, hs := newTestServer(t, &g, serve.Config{})
	resp, body := post(t, hs.URL+"/v1/chat/completions", `{"messages": `+seedMessages+`}`)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "no chat template") {
		t.Errorf("chat without a template: %d %s", resp.StatusCode, body)
	}
	if resp, body := post(t, hs.URL+"/v1/completions", `{"prompt": "ROMEO:", "max_tokens": 3}`); resp.StatusCode != 200 {
		t.Errorf("completion: %d %s", resp.StatusCode, body)
	}
}

// TestChunkedPrefill: a prompt longer than PrefillChunk is fed over several
// steps and the reply is the one the libraries compute in one pass.
func TestChunkedPrefill(t *testing.T) {
	f := openFixture(t, "models/qwen2_moe_small")
	text, err := os.ReadFile(filepath.Join(fixtureRoot(t), "tinyshakespeare.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ids := f.tok.Encode(string(text[:4000]))[:serve.PrefillChunk*2+37]
	g, err := f.m.Generate(context.Background(), ids, model.GenerateOptions{MaxNewTokens: 12}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := serve.NewEngine(f.m, 4, 4)
	defer e.Close(context.Background())
	r := &serve.Request{Prompt: ids, MaxTokens: 12, Tokens: make(chan int, 13)}
	if err := e.Submit(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	var got []int
	for id := range r.Tokens {
		got = append(got, id)
	}
	if d := cmp.Diff(g.IDs, got); d != "" {
		t.Errorf("chunked prefill (-one pass +chunked):\n%s", d)
	}
	if st := e.Stats(); st.Steps != 3+11 {
		t.Errorf("%d steps, want 3 prefill steps + 11 decode steps", st.Steps)
	}
}

func fixtureRoot(t *testing.T) string {
	t.Helper()
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

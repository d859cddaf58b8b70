package serve_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/moeforge/moeforge/internal/judge"
	"github.com/moeforge/moeforge/serve"
)

// TestOpenAIClient runs the official openai npm client (judges/openai)
// against a server on loopback: plain and streamed chat, 8 concurrent
// streams, a disconnect, malformed JSON, errors the client must parse,
// models and completions. Its greedy reply must be the library's.
func TestOpenAIClient(t *testing.T) {
	dir := judge.Dir(t, "openai")
	f := openFixture(t, "models/qwen2_moe_small")
	s, hs := newTestServer(t, f, serve.Config{ModelID: "qwen2_moe_small"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "client.mjs"), hs.URL+"/v1", "qwen2_moe_small")
	out, err := cmd.Output()
	var res struct {
		OK     bool `json:"ok"`
		Checks []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Detail any    `json:"detail"`
		} `json:"checks"`
		Plain string `json:"plain"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("client output %q: %v (run error %v)", out, jerr, err)
	}
	for _, c := range res.Checks {
		if !c.OK {
			t.Errorf("openai client: %s: %v", c.Name, c.Detail)
		}
	}
	if err != nil || !res.OK {
		t.Errorf("openai client failed: %v", err)
	}
	want, _, _ := greedyReference(t, f, 16)
	if res.Plain != want {
		t.Errorf("the client got %q, the libraries compute %q", res.Plain, want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Engine().Stats().Active != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a := s.Engine().Stats().Active; a != 0 {
		t.Errorf("%d sequences still active after the client finished (the disconnected one?)", a)
	}
}

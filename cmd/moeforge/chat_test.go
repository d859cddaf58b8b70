package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/tokenizer/chattemplate"
)

// chatReference renders system+user with the template and generates
// greedily with the chat stop ids, through the libraries.
func chatReference(t *testing.T, dir, system, user string, n int) string {
	t.Helper()
	m, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
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
	stop := chat.StopIDs(tok, gen.EOS)
	im, _ := tok.TokenID("<|im_end|>")
	eot, _ := tok.TokenID("<|endoftext|>")
	if d := cmp.Diff([]int{im, eot}, stop); d != "" {
		t.Errorf("chat stop ids (-want +got): %s (the config's eos 0, an ordinary token, must not be one)", d)
	}
	var msgs []chattemplate.Message
	if system != "" {
		msgs = append(msgs, chattemplate.Message{Role: "system", Content: system})
	}
	msgs = append(msgs, chattemplate.Message{Role: "user", Content: user})
	text, err := chat.Render(chattemplate.Messages(msgs), chattemplate.Options{AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Generate(context.Background(), tok.Encode(text), model.GenerateOptions{MaxNewTokens: n, EOS: stop}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := g.IDs
	if g.Stop == model.StopEOS {
		ids = ids[:len(ids)-1]
	}
	out, err := tok.Decode(ids)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGenerateChat: --chat --system renders the conversation with the
// model's template and prints the greedy reply the libraries compute;
// sampling with a seed is reproducible.
func TestGenerateChat(t *testing.T) {
	dir := checkpointCopy(t, "models/qwen2_moe_small")
	const sys, user = "You are a helpful assistant.", "Give me a short introduction to large language model."
	want := chatReference(t, dir, sys, user, 32)
	code, stdout, stderr := runMoeforge(t, "generate", dir, "--chat", "--system", sys, "--prompt", user, "--max-new-tokens", "32")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.TrimSuffix(stdout, "\n") != strings.TrimSuffix(want, "\n") {
		t.Errorf("--chat printed %q, want %q", stdout, want)
	}
	sample := func(seed string) string {
		code, stdout, stderr := runMoeforge(t, "--quiet", "generate", dir, "--chat", "--prompt", user, "--max-new-tokens", "24",
			"--temperature", "0.9", "--top-p", "0.95", "--seed", seed)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		return stdout
	}
	if a, b := sample("3"), sample("3"); a != b {
		t.Errorf("--seed 3 twice: %q vs %q", a, b)
	}
	if code, _, stderr := runMoeforge(t, "generate", dir, "--prompt", "x", "--system", "s"); code != 2 || !strings.Contains(stderr, "--chat") {
		t.Errorf("--system without --chat: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runMoeforge(t, "generate", dir, "--prompt", "x", "--temperature", "-1"); code != 2 || !strings.Contains(stderr, "temperature") {
		t.Errorf("--temperature -1: exit %d, %q", code, stderr)
	}
}

// withStdin runs f with os.Stdin reading input.
func withStdin(t *testing.T, input string, f func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { w.WriteString(input); w.Close() }()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	f()
}

// TestChatCommand: replies are streamed greedily as the libraries compute
// them; the second turn sees the first (and reuses its KV cache); /reset
// starts over; /system sets the system prompt.
func TestChatCommand(t *testing.T) {
	dir := checkpointCopy(t, "models/qwen2_moe_small")
	first := chatReference(t, dir, "", "Hello", 24)
	withSys := chatReference(t, dir, "You are a pirate.", "Hello", 24)
	var code int
	var stdout, stderr string
	withStdin(t, "Hello\nAnd then?\n/reset\nHello\n/system You are a pirate.\nHello\n/bogus\n", func() {
		code, stdout, stderr = runMoeforge(t, "chat", dir, "--max-new-tokens", "24")
	})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(stdout, first) {
		t.Errorf("first reply: %q, want it to start with %q", stdout, first)
	}
	if !strings.Contains(stdout, first+"\n"+first) && strings.Count(stdout, first) < 2 {
		t.Errorf("the reply after /reset is not the first reply again:\n%s", stdout)
	}
	if !strings.Contains(stdout, withSys) {
		t.Errorf("the reply with /system is not %q:\n%s", withSys, stdout)
	}
	turns := regexp.MustCompile(`\[(\d+) prompt tokens \((\d+) new\)`).FindAllStringSubmatch(stderr, -1)
	if len(turns) != 4 {
		t.Fatalf("%d turns reported on stderr, want 4:\n%s", len(turns), stderr)
	}
	if turns[1][1] == turns[1][2] {
		t.Errorf("second turn: %s prompt tokens, all new: the KV cache of the first turn was not reused", turns[1][1])
	}
	if turns[2][2] != turns[2][1] && turns[2][1] != turns[0][1] {
		t.Errorf("after /reset the prompt is %s tokens, first turn %s", turns[2][1], turns[0][1])
	}
	if !strings.Contains(stderr, "unknown command /bogus") {
		t.Errorf("unknown command not reported: %q", stderr)
	}
}

// TestChatAndServeBadInput: a missing model directory is an input error.
func TestChatAndServeBadInput(t *testing.T) {
	for _, args := range [][]string{{"chat", "/nonexistent/model"}, {"serve", "/nonexistent/model"}} {
		code, _, stderr := runMoeforge(t, args...)
		if code != 2 || !strings.Contains(stderr, "/nonexistent/model") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

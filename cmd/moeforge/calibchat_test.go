package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/quantize"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/tokenizer/chattemplate"
)

// TestQuantizeCalibChat: --calib-chat renders each conversation with the
// model's chat template and calibrates on exactly those tokens.
func TestQuantizeCalibChat(t *testing.T) {
	in := checkpointCopy(t, "fixtures/qwen2_moe_tiny/model")
	tmp := t.TempDir()
	jsonl := filepath.Join(tmp, "chats.jsonl")
	var lines []string
	for i := 0; i < 5; i++ {
		msgs := []map[string]string{{"role": "system", "content": "You are a helpful assistant."},
			{"role": "user", "content": fmt.Sprintf("Question %d: what is a Mixture-of-Experts model?", i)},
			{"role": "assistant", "content": strings.Repeat("Experts route tokens. ", i+1)}}
		b, _ := json.Marshal(map[string]any{"messages": msgs})
		lines = append(lines, string(b))
	}
	os.WriteFile(jsonl, []byte(strings.Join(lines, "\n")+"\n\n"), 0o644)

	chat, err := chattemplate.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	texts, err := chat.RenderJSONL(jsonl, []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, s := range texts[:4] {
		if !strings.Contains(s, "<|im_start|>assistant\nExperts route tokens.") {
			t.Fatalf("rendered conversation lacks the assistant turn: %q", s)
		}
		want += min(len(tok.Encode(s)), 48)
	}

	out := filepath.Join(tmp, "q")
	report := filepath.Join(tmp, "report.json")
	code, _, stderr := runMoeforge(t, "quantize", "--in", in, "--out", out, "--calib-chat", jsonl,
		"--nsamples", "4", "--seqlen", "48", "--group-size", "32", "--report", report)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep quantize.Report
	data, _ := os.ReadFile(report)
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Calibration == nil || rep.Calibration.Sequences != 4 || rep.Calibration.Tokens != want || !strings.Contains(rep.Calibration.Source, "chat template") {
		t.Errorf("calibration %+v, want 4 sequences and %d tokens", rep.Calibration, want)
	}

	// a malformed line is an input error naming the file and line
	os.WriteFile(jsonl, []byte(lines[0]+"\n{\"messages\": 3}\n"), 0o644)
	code, _, stderr = runMoeforge(t, "quantize", "--in", in, "--out", filepath.Join(tmp, "q2"), "--calib-chat", jsonl)
	if code != 2 || !strings.Contains(stderr, "chats.jsonl:2") {
		t.Errorf("bad line: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(tmp, "q2")); err == nil {
		t.Error("an output was left behind")
	}
	code, _, stderr = runMoeforge(t, "quantize", "--in", in, "--out", filepath.Join(tmp, "q3"), "--calib-chat", jsonl, "--calib", jsonl)
	if code != 2 || !strings.Contains(stderr, "one of --calib") {
		t.Errorf("two sources: exit %d, %q", code, stderr)
	}
}

// TestQuantizeCalibChatEmpty: a conversation the template renders to no
// tokens is refused naming it, before any work (exit 2, no output).
func TestQuantizeCalibChatEmpty(t *testing.T) {
	in := checkpointCopy(t, "fixtures/qwen2_moe_tiny/model")
	if err := os.WriteFile(filepath.Join(in, "chat_template.jinja"), []byte("{% for m in messages %}{{ m.content }}{% endfor %}"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	jsonl := filepath.Join(tmp, "chats.jsonl")
	os.WriteFile(jsonl, []byte(`{"messages": [{"role": "user", "content": "Hello there"}]}`+"\n"+`{"messages": [{"role": "user", "content": ""}]}`+"\n"), 0o644)
	out := filepath.Join(tmp, "q")
	code, _, stderr := runMoeforge(t, "quantize", "--in", in, "--out", out, "--calib-chat", jsonl, "--nsamples", "4", "--seqlen", "48")
	if code != 2 || !strings.Contains(stderr, "conversation 2 renders to no tokens") {
		t.Fatalf("exit %d, stderr %q; want 2 naming conversation 2", code, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output left behind: %v", err)
	}
}

//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeCommandSIGTERM: serve answers on its port with the directory
// name as model id; on SIGTERM a request in flight still completes, new
// ones are refused, and the command exits 0.
func TestServeCommandSIGTERM(t *testing.T) {
	dir := checkpointCopy(t, "models/qwen2_moe_small")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result)
	go func() {
		code, stdout, stderr := runMoeforge(t, "serve", dir, "--port", fmt.Sprint(port), "--drain-timeout", "60s")
		done <- result{code, stdout, stderr}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var models struct {
		Data []struct{ ID string } `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&models)
	resp.Body.Close()
	if len(models.Data) != 1 || models.Data[0].ID != "qwen2_moe_small" {
		t.Errorf("/v1/models: %+v", models)
	}
	// a long streamed request, then SIGTERM while it runs
	inflight := make(chan string)
	go func() {
		resp, err := http.Post(base+"/v1/completions", "application/json",
			strings.NewReader(`{"prompt": "ROMEO:", "max_tokens": 300, "temperature": 0, "stream": true}`))
		if err != nil {
			inflight <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- string(body)
	}()
	time.Sleep(50 * time.Millisecond)
	syscall.Kill(syscall.Getpid(), syscall.SIGTERM)
	body := <-inflight
	if !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Errorf("the request in flight at SIGTERM did not complete: ...%q", body[max(0, len(body)-200):])
	}
	r := <-done
	if r.code != 0 || !strings.Contains(r.stderr, "shutting down") {
		t.Errorf("serve exit %d, stderr %q", r.code, r.stderr)
	}
}

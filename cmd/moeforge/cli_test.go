package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/moeforge/moeforge/internal/fixture"
)

// stdioMu serializes the tests that swap os.Stdout and os.Stderr.
var stdioMu sync.Mutex

// runMoeforge runs the command line through run, as main does, and returns
// the exit code and what was written to stdout and stderr.
func runMoeforge(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	stdioMu.Lock()
	defer stdioMu.Unlock()
	rOut, wOut, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	rErr, wErr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var outBuf, errBuf bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(&outBuf, rOut) }()
	go func() { defer wg.Done(); io.Copy(&errBuf, rErr) }()
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = wOut, wErr
	func() {
		defer func() { os.Stdout, os.Stderr = oldOut, oldErr }()
		code = run(args)
	}()
	wOut.Close()
	wErr.Close()
	wg.Wait()
	rOut.Close()
	rErr.Close()
	return code, outBuf.String(), errBuf.String()
}

// checkpointCopy materializes testdata/rel (decompressed) into a fresh
// temporary directory that the test may modify.
func checkpointCopy(t *testing.T, rel string) string {
	t.Helper()
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(rel))
	if err := fixture.Materialize(filepath.Join(root, rel), dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// rawSafetensors assembles a safetensors file from a header and data.
func rawSafetensors(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

// editIndex rewrites the shard index of dir through f.
func editIndex(t *testing.T, dir string, f func(idx map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, "model.safetensors.index.json")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var idx map[string]any
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	f(idx)
	raw, _ = json.Marshal(idx)
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestInspectBrokenCheckpoints: a malformed checkpoint is an input error:
// exit code 2 and one line on stderr naming the file or tensor at fault,
// nothing on stdout.
func TestInspectBrokenCheckpoints(t *testing.T) {
	const dense = "fixtures/qwen2_dense_tiny/model"
	const sharded = "fixtures/qwen2_moe_tiny_sharded/model"
	cases := []struct {
		name   string
		src    string
		break_ func(t *testing.T, dir string)
		want   []string
	}{
		{"truncated", dense, func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.safetensors")
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()-1000); err != nil {
				t.Fatal(err)
			}
		}, []string{"model.safetensors", "truncated"}},
		{"truncated header", dense, func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "model.safetensors"), 100); err != nil {
				t.Fatal(err)
			}
		}, []string{"model.safetensors", "runs past the end"}},
		{"corrupted header", dense, func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.safetensors")
			data, _ := os.ReadFile(p)
			copy(data[40:], "\x00\x01garbage")
			os.WriteFile(p, data, 0o644)
		}, []string{"model.safetensors", "header"}},
		{"corrupted tensor entry", dense, func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.safetensors")
			data, _ := os.ReadFile(p)
			n := binary.LittleEndian.Uint64(data)
			i := bytes.Index(data[8:8+n], []byte(`"model.norm.weight":{"dtype":"F32"`))
			if i < 0 {
				t.Fatal("model.norm.weight not found in the header")
			}
			copy(data[8+i:], `"model.norm.weight":{"dtype":"F99"`)
			os.WriteFile(p, data, 0o644)
		}, []string{"model.safetensors", "model.norm.weight", "F99"}},
		{"overlapping offsets", dense, func(t *testing.T, dir string) {
			f := rawSafetensors(`{"model.norm.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},`+
				`"model.embed_tokens.weight":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12))
			os.WriteFile(filepath.Join(dir, "model.safetensors"), f, 0o644)
		}, []string{"model.safetensors", "model.embed_tokens.weight", "overlap"}},
		{"missing shard", sharded, func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model-00003-of-00014.safetensors"))
		}, []string{"model.safetensors.index.json", "model-00003-of-00014.safetensors", "does not exist"}},
		{"total_size mismatch", sharded, func(t *testing.T, dir string) {
			editIndex(t, dir, func(idx map[string]any) {
				meta := idx["metadata"].(map[string]any)
				meta["total_size"] = meta["total_size"].(float64) + 2
			})
		}, []string{"model.safetensors.index.json", "total_size"}},
		{"tensor missing from index", sharded, func(t *testing.T, dir string) {
			editIndex(t, dir, func(idx map[string]any) { delete(idx["weight_map"].(map[string]any), "model.norm.weight") })
		}, []string{"model.safetensors.index.json", "model.norm.weight", "not listed"}},
		{"index not JSON", sharded, func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte("{\"weight_map\": "), 0o644)
		}, []string{"model.safetensors.index.json"}},
		{"shape disagrees with config", dense, func(t *testing.T, dir string) {
			p := filepath.Join(dir, "config.json")
			data, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(data, []byte(`"intermediate_size": 256`), []byte(`"intermediate_size": 200`), 1), 0o644)
		}, []string{"model.layers.0.mlp.gate_proj.weight", "intermediate_size=200"}},
		{"bad config", dense, func(t *testing.T, dir string) {
			p := filepath.Join(dir, "config.json")
			data, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(data, []byte(`"num_hidden_layers": 3`), []byte(`"num_hidden_layers": "3"`), 1), 0o644)
		}, []string{"config.json", "num_hidden_layers"}},
		{"missing config", dense, func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "config.json"))
		}, []string{"no config.json"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := checkpointCopy(t, c.src)
			c.break_(t, dir)
			for _, args := range [][]string{{"inspect", dir}, {"inspect", "--json", dir}} {
				code, stdout, stderr := runMoeforge(t, args...)
				if code != 2 {
					t.Errorf("%v: exit code %d, want 2 (stderr %q)", args, code, stderr)
				}
				if stdout != "" {
					t.Errorf("%v: wrote to stdout: %q", args, stdout)
				}
				if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") || !strings.HasPrefix(stderr, "moeforge: ") {
					t.Errorf("%v: stderr is not one line: %q", args, stderr)
				}
				for _, w := range c.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("%v: stderr %q does not mention %q", args, stderr, w)
					}
				}
			}
		})
	}
}

// TestUsageErrors: bad command lines and paths exit with code 2 and one line.
func TestUsageErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-checkpoint")
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect", missing}, "no-such-checkpoint: no such file or directory"},
		{[]string{"inspect", t.TempDir()}, "neither a checkpoint directory nor a config.json"},
		{[]string{"inspect", filepath.Join(root, "models/qwen2_moe_small")}, "zstd-compressed"},
		{[]string{"inspect"}, "accepts 1 arg"},
		{[]string{"inspect", "a", "b"}, "accepts 1 arg"},
		{[]string{"inspect", "--bogus", "x"}, "--bogus"},
		{[]string{"no-such-command"}, `unknown command "no-such-command"`},
		{[]string{"version", "extra"}, "unknown command"},
	} {
		code, stdout, stderr := runMoeforge(t, c.args...)
		if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line mentioning %q", c.args, code, stderr, c.want)
		}
		if stdout != "" {
			t.Errorf("%v: wrote to stdout: %q", c.args, stdout)
		}
	}
}

// TestHelpAndVersion: help lists the commands; version prints one line.
func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {}} {
		code, stdout, _ := runMoeforge(t, args...)
		if code != 0 {
			t.Errorf("%v: exit %d", args, code)
		}
		for _, w := range []string{"Usage:", "inspect", "completion", "version"} {
			if !strings.Contains(stdout, w) {
				t.Errorf("%v: help does not mention %q:\n%s", args, w, stdout)
			}
		}
	}
	code, stdout, _ := runMoeforge(t, "help", "inspect")
	if code != 0 || !strings.Contains(stdout, "inspect PATH") || !strings.Contains(stdout, "--json") {
		t.Errorf("help inspect: %d\n%s", code, stdout)
	}
	code, stdout, _ = runMoeforge(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "moeforge ") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("version: %d %q", code, stdout)
	}
}

// TestCompletion: cobra's completion scripts for every shell, and the
// dynamic completion they call.
func TestCompletion(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash":       "__start_moeforge",
		"zsh":        "#compdef moeforge",
		"fish":       "complete -c moeforge",
		"powershell": "Register-ArgumentCompleter",
	} {
		code, stdout, stderr := runMoeforge(t, "completion", shell)
		if code != 0 || !strings.Contains(stdout, marker) {
			t.Errorf("completion %s: exit %d, stderr %q, script lacks %q", shell, code, stderr, marker)
		}
	}
	// What the scripts run when the user presses tab.
	code, stdout, _ := runMoeforge(t, "__complete", "insp")
	if code != 0 || !strings.Contains(stdout, "inspect\t") {
		t.Errorf("__complete insp: %d %q", code, stdout)
	}
	// inspect completes its PATH argument with files and directories (directive 0).
	code, stdout, _ = runMoeforge(t, "__complete", "inspect", "")
	if code != 0 || !strings.HasSuffix(strings.TrimSpace(stdout), ":0") {
		t.Errorf("__complete inspect: %d %q", code, stdout)
	}
	code, stdout, _ = runMoeforge(t, "__complete", "inspect", "--j")
	if code != 0 || !strings.Contains(stdout, "--json") {
		t.Errorf("__complete inspect --j: %d %q", code, stdout)
	}
}

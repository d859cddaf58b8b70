package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moeforge/moeforge/quantize"
)

// runMainEnv makes the test binary run the command line instead of the
// tests, for the tests that need a real process to signal.
const runMainEnv = "MOEFORGE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestInterruptKeepsResumeState sends SIGINT to a quantize process once
// its first layer is checkpointed: it exits 130, says where the finished
// layers are, leaves only the resume state (no partial shards) in its
// temporary directory and no output; the same command with --resume then
// quantizes the remaining layers only and writes an output byte-identical
// to an uninterrupted run's.
func TestInterruptKeepsResumeState(t *testing.T) {
	in := checkpointCopy(t, "models/qwen2_moe_small")
	tmp := t.TempDir()
	args := func(out string) []string {
		return []string{"quantize", "--in", in, "--out", out, "--calib", quantizeCorpus(t),
			"--nsamples", "96", "--seqlen", "128", "--threads", "1", "--quiet"}
	}
	want := filepath.Join(tmp, "want")
	if code, _, stderr := runMoeforge(t, args(want)...); code != 0 {
		t.Fatalf("uninterrupted run: exit %d, %s", code, stderr)
	}

	out := filepath.Join(tmp, "got")
	cmd := exec.Command(os.Args[0], args(out)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Stop the process as soon as a layer is checkpointed, look at the
	// state, then interrupt it.
	var state string
	for deadline := time.Now().Add(2 * time.Minute); state == "" && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		m, _ := filepath.Glob(filepath.Join(tmp, ".got.tmp-*", quantize.CheckpointDir, "state.json"))
		if len(m) > 0 {
			cmd.Process.Signal(syscall.SIGSTOP)
			state = m[0]
		}
	}
	if state == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no layer was checkpointed: %s", stderr.String())
	}
	var st struct {
		Layers int `json:"layers_done"`
	}
	if data, err := os.ReadFile(state); err != nil || json.Unmarshal(data, &st) != nil || st.Layers < 1 || st.Layers >= 3 {
		t.Fatalf("state when stopped: %d layers done (%v); want 1 or 2 of 3", st.Layers, err)
	}
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Process.Signal(syscall.SIGCONT)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("interrupted run: %v, want exit 130; stderr %s", err, stderr.String())
	}
	tmpDir := filepath.Dir(filepath.Dir(state))
	if !strings.Contains(stderr.String(), "the finished layers are kept in "+tmpDir+": the same command with --resume") {
		t.Errorf("stderr does not say where the state is:\n%s", stderr.String())
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("interrupted run left an output: %v", err)
	}
	entries, _ := os.ReadDir(tmpDir)
	for _, e := range entries {
		if e.Name() != quantize.CheckpointDir && e.Name() != ".moeforge-owner" {
			t.Errorf("interrupted run left %s beside its resume state", e.Name())
		}
	}

	report := filepath.Join(tmp, "report.json")
	code, _, errText := runMoeforge(t, append(args(out), "--resume", "--report", report)...)
	if code != 0 {
		t.Fatalf("--resume: exit %d, %s", code, errText)
	}
	var rep quantize.Report
	if data, err := os.ReadFile(report); err != nil || json.Unmarshal(data, &rep) != nil {
		t.Fatalf("report: %v", err)
	}
	if rep.ResumedLayers != st.Layers {
		t.Errorf("resumed %d layers, the state had %d", rep.ResumedLayers, st.Layers)
	}
	for _, f := range []string{"model.safetensors", "config.json", "quantize_config.json"} {
		a, errA := os.ReadFile(filepath.Join(want, f))
		b, errB := os.ReadFile(filepath.Join(out, f))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between the uninterrupted and the resumed run (%v, %v)", f, errA, errB)
		}
	}
	if _, err := os.Stat(tmpDir); !os.IsNotExist(err) {
		t.Errorf("the interrupted run's directory is still there after --resume: %v", err)
	}
}

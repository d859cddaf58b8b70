package quantize

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/hf"
)

var errKilled = errors.New("killed")

// TestResume stops a run in the middle of a layer (an injected failure at
// the start of a stage, as a kill would) and resumes it from its
// checkpoint: the resumed run quantizes only the unfinished layers and its
// output is byte-identical to an uninterrupted run's, with the same report
// modules; the state of a finished run is removed; a state made with other
// calibration data is refused.
func TestResume(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		layer   int
		stage   string
		spill   bool
		lmHead  bool
	}{
		{"qwen2_moe_tiny", 3, "lm_head", false, true},
		{"qwen2_dense_tiny", 2, "output", false, true},
		{"qwen2_moe_tiny", 1, "experts", false, false},
		{"qwen2_moe_tiny", 2, "qkv", true, false},
		{"qwen2_dense_tiny", 1, "mlp", false, false},
		{"mixtral_tiny", 1, "output", false, false},
	} {
		t.Run(tc.fixture+"/"+tc.stage, func(t *testing.T) {
			src := tinyModel(t, tc.fixture)
			ck := openCheckpoint(t, src)
			calib := corpus.RandomIDs(6, 40, ck.Config.VocabSize, 5)
			opt := defaultOptions()
			opt.ExpertFallback = FallbackAllTokens
			if tc.spill {
				opt.SpillDir = t.TempDir()
			}
			opt.Config.LMHead = tc.lmHead
			want, wantRep, _ := quantizeTo(t, src, calib, opt)

			state := filepath.Join(t.TempDir(), "state")
			killed := opt
			killed.Checkpoint = state
			killed.inject = func(layer int, stage string) error {
				if layer == tc.layer && stage == tc.stage {
					return errKilled
				}
				return nil
			}
			if _, err := Run(context.Background(), ck, t.TempDir(), calib, killed); !errors.Is(err, errKilled) {
				t.Fatalf("injected failure: got %v", err)
			}
			st, err := loadResume(state, mustFingerprint(t, ck, calib, killed))
			if err != nil || st == nil || st.Layers != tc.layer {
				t.Fatalf("state after the failure: %+v, %v; want %d layers done", st, err, tc.layer)
			}

			other := opt
			other.Checkpoint = state
			if _, err := Run(context.Background(), ck, t.TempDir(), corpus.RandomIDs(6, 40, ck.Config.VocabSize, 6), other); err == nil || !strings.Contains(err.Error(), "another input") {
				t.Fatalf("resume with other calibration: got %v", err)
			}

			resumed := opt
			resumed.Checkpoint = state
			got, gotRep, layers := quantizeTo(t, src, calib, resumed)
			for name := range layers {
				if name == "lm_head" {
					continue
				}
				if !strings.HasPrefix(name, "model.layers.") || layerOf(name) < tc.layer {
					t.Errorf("%s was quantized again", name)
				}
			}
			sameFiles(t, want, got, "the uninterrupted and the resumed run")
			if gotRep.ResumedLayers != tc.layer || len(gotRep.Modules) != len(wantRep.Modules) || len(gotRep.Starved) != len(wantRep.Starved) {
				t.Errorf("resumed report: %d layers resumed, %d modules, %d starved; want %d, %d, %d",
					gotRep.ResumedLayers, len(gotRep.Modules), len(gotRep.Starved), tc.layer, len(wantRep.Modules), len(wantRep.Starved))
			}
			for k := range gotRep.Modules {
				if k < len(wantRep.Modules) && (gotRep.Modules[k].Name != wantRep.Modules[k].Name || gotRep.Modules[k].Loss != wantRep.Modules[k].Loss) {
					t.Fatalf("module %d: %s loss %g, uninterrupted %s loss %g", k, gotRep.Modules[k].Name, gotRep.Modules[k].Loss, wantRep.Modules[k].Name, wantRep.Modules[k].Loss)
				}
			}
			if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("resume state of the finished run not removed: %v", err)
			}
		})
	}
}

// mustFingerprint is the fingerprint RunTo computes for the run.
func mustFingerprint(t *testing.T, ck *hf.Checkpoint, calib [][]int, opt Options) string {
	t.Helper()
	opt.calibSeqs = len(calib)
	if err := opt.validate(ck.Config); err != nil {
		t.Fatal(err)
	}
	r := &runner{ck: ck, opt: opt}
	fp, err := r.fingerprint(calib)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

func layerOf(name string) int {
	rest := strings.TrimPrefix(name, "model.layers.")
	n := 0
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// TestAdoptState moves the state of the newest interrupted run of an
// output into the new run's checkpoint directory and removes the rest of
// the run it came from; runs without state are left alone.
func TestAdoptState(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "gptq")
	killed := filepath.Join(parent, ".gptq.tmp-111")
	bare := filepath.Join(parent, ".gptq.tmp-222")
	for _, d := range []string{filepath.Join(killed, CheckpointDir), bare} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(killed, CheckpointDir, stateFile), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(killed, "model.safetensors"), []byte("partial"), 0o644)
	if got := LeftState(out); got != killed {
		t.Errorf("LeftState = %q, want %q", got, killed)
	}
	into := filepath.Join(t.TempDir(), CheckpointDir)
	from, err := AdoptState(out, into)
	if err != nil || from != killed {
		t.Fatalf("AdoptState = %q, %v; want %q", from, err, killed)
	}
	if _, err := os.Stat(filepath.Join(into, stateFile)); err != nil {
		t.Errorf("state not moved: %v", err)
	}
	if _, err := os.Stat(killed); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("interrupted run's directory not removed: %v", err)
	}
	if _, err := os.Stat(bare); err != nil {
		t.Errorf("a directory without state was touched: %v", err)
	}
	if from, err := AdoptState(out, into); from != "" || err != nil {
		t.Errorf("second AdoptState = %q, %v; want nothing", from, err)
	}
}

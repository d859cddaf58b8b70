package export

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/quantize"
)

// rtnCheckpoint quantizes the checkpoint dir with round-to-nearest GPTQ
// int4 (the GPTQ layout without calibration) into a temporary directory.
func rtnCheckpoint(t testing.TB, dir string, group int, sym bool) string {
	return rtnCheckpointBits(t, dir, 4, group, sym)
}

// rtnCheckpointBits is rtnCheckpoint with another code width.
func rtnCheckpointBits(t testing.TB, dir string, bits, group int, sym bool) string {
	return rtnCheckpointFormat(t, dir, bits, group, sym, gptq.FormatV1)
}

// rtnCheckpointFormat is rtnCheckpointBits in the given checkpoint_format.
func rtnCheckpointFormat(t testing.TB, dir string, bits, group int, sym bool, format string) string {
	t.Helper()
	ck, err := hf.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	out := filepath.Join(t.TempDir(), "gptq")
	opt := quantize.DefaultOptions()
	opt.Method, opt.Config.Bits, opt.Config.GroupSize, opt.Config.Sym = quantize.MethodRTN, bits, group, sym
	opt.Config.CheckpointFormat = format
	if err := mkdir(out); err != nil {
		t.Fatal(err)
	}
	if _, err := quantize.Run(context.Background(), ck, out, nil, opt); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGPTQRepackExact: a symmetric GPTQ checkpoint with group size 32 or 64
// exported as Q4_0 (4-bit) or Q8_0 (8-bit) dequantizes, in every quantized
// matrix, to exactly the GPTQ dequantization (bit for bit), with Mixtral's
// q/k rows permuted.
func TestGPTQRepackExact(t *testing.T) {
	for _, c := range []struct {
		rel         string
		bits, group int
		want        string
		format      string
	}{
		{"models/qwen2_moe_small", 4, 32, "Q4_0", gptq.FormatV1}, {"fixtures/mixtral_tiny/model", 4, 32, "Q4_0", gptq.FormatV1},
		{"models/qwen2_dense_small", 4, 64, "Q4_0", gptq.FormatV1}, {"models/qwen2_dense_small", 4, 32, "Q4_0", gptq.FormatV2},
		{"models/qwen2_moe_small", 8, 32, "Q8_0", gptq.FormatV1}, {"fixtures/mixtral_tiny/model", 8, 64, "Q8_0", gptq.FormatV2},
	} {
		t.Run(fmt.Sprintf("%s/%dbit-g%d-%s", c.rel, c.bits, c.group, c.format), func(t *testing.T) {
			src := rtnCheckpointFormat(t, materialized(t, c.rel), c.bits, c.group, true, c.format)
			path, sum := exportFile(t, src, GGUFOptions{})
			if sum.Type != c.want || sum.Requantized != 0 || sum.Repacked == 0 {
				t.Fatalf("summary %+v: want the default %s with every GPTQ matrix repacked", sum, c.want)
			}
			ck, err := hf.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			checked := checkRepack(t, ck, f)
			if checked != sum.Repacked {
				t.Errorf("compared %d GPTQ matrices, summary says %d repacked", checked, sum.Repacked)
			}
		})
	}
}

// checkRepack compares every Q4_0 tensor of f with the GPTQ layers of ck it
// came from and returns how many layers it compared.
func checkRepack(t *testing.T, ck *hf.Checkpoint, f *gguf.File) int {
	t.Helper()
	c := ck.Config
	n := 0
	for i := 0; i < c.NumHiddenLayers; i++ {
		permuted := c.ModelType == hf.Mixtral
		experts := map[hf.Proj][]hf.Linear{}
		for _, l := range c.LayerLinears(i) {
			var name string
			var perm func(int) int
			switch l.Kind {
			case hf.KindAttention:
				proj := l.Name[len(l.Name)-len("q_proj"):]
				name = fmt.Sprintf("blk.%d.%s.weight", i, map[string]string{hf.QProj: "attn_q", hf.KProj: "attn_k", hf.VProj: "attn_v", hf.OProj: "attn_output"}[proj])
				if permuted && proj == hf.QProj {
					perm = ropePermutation(c.NumAttentionHeads, c.HeadDim)
				} else if permuted && proj == hf.KProj {
					perm = ropePermutation(c.NumKeyValueHeads, c.HeadDim)
				}
			case hf.KindMLP:
				name = fmt.Sprintf("blk.%d.ffn_%s.weight", i, ffnName(l.Proj))
			case hf.KindSharedExpert:
				name = fmt.Sprintf("blk.%d.ffn_%s_shexp.weight", i, ffnName(l.Proj))
			case hf.KindExpert:
				experts[l.Proj] = append(experts[l.Proj], l)
				continue
			default:
				continue
			}
			compareLayer(t, ck, f, name, l, 0, perm)
			n++
		}
		for p, ls := range experts {
			for e, l := range ls {
				compareLayer(t, ck, f, fmt.Sprintf("blk.%d.ffn_%s_exps.weight", i, ffnName(p)), l, e, nil)
				n++
			}
		}
	}
	return n
}

// compareLayer checks that matrix index (expert) of GGUF tensor name
// dequantizes bit for bit to the GPTQ layer l (rows permuted by perm).
func compareLayer(t *testing.T, ck *hf.Checkpoint, f *gguf.File, name string, l hf.Linear, index int, perm func(int) int) {
	t.Helper()
	gt, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("GGUF has no %s", name)
	}
	if gt.Type != gguf.Q4_0 && gt.Type != gguf.Q8_0 {
		t.Fatalf("%s is %s, want Q4_0 or Q8_0", name, gt.Type)
	}
	lw, err := ck.Linear(l)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := gptqLayer(ck.Dir, ck.Config.Quantization, lw, l.Out, l.In)
	if err != nil {
		t.Fatal(err)
	}
	want := permuteRows(layer.Dequantize(), l.Out, l.In, perm)
	per := l.Out * l.In / 32 * gt.Type.BlockBytes()
	got := make([]float32, l.Out*l.In)
	if err := gguf.Decode(gt.Type, got, gt.Bytes()[index*per:(index+1)*per]); err != nil {
		t.Fatal(err)
	}
	for k := range want {
		if math.Float32bits(got[k]) != math.Float32bits(want[k]) {
			t.Fatalf("%s (matrix %d) element [%d, %d]: GGUF %g, GPTQ %g", name, index, k/l.In, k%l.In, got[k], want[k])
		}
	}
}

// TestGPTQRefusals: settings that cannot repack exactly are refused naming
// the config key, and --requantize writes them anyway.
func TestGPTQRefusals(t *testing.T) {
	src := rtnCheckpoint(t, materialized(t, "models/qwen2_dense_small"), 16, true)
	ck, err := hf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	_, err = PlanGGUF(ck, GGUFOptions{})
	if !errors.Is(err, ErrUnsupported) || !contains(err.Error(), "quantization_config.group_size=16") {
		t.Errorf("group size 16: %v", err)
	}
	_, err = PlanGGUF(ck, GGUFOptions{Type: gguf.Q8_0, TypeSet: true})
	if !errors.Is(err, ErrUnsupported) || !contains(err.Error(), "q8_0") {
		t.Errorf("q8_0 from 4-bit: %v", err)
	}
	_, sum := exportFile(t, src, GGUFOptions{Requantize: true})
	if sum.Repacked != 0 || sum.Requantized == 0 {
		t.Errorf("--requantize summary %+v", sum)
	}
	_, sum = exportFile(t, src, GGUFOptions{Type: gguf.F32, TypeSet: true})
	if sum.Dequantized == 0 || sum.Repacked != 0 {
		t.Errorf("F32 from GPTQ summary %+v", sum)
	}

	eight := rtnCheckpointBits(t, materialized(t, "models/qwen2_dense_small"), 8, 32, true)
	ck8, err := hf.Open(eight)
	if err != nil {
		t.Fatal(err)
	}
	defer ck8.Close()
	if _, err := PlanGGUF(ck8, GGUFOptions{Type: gguf.Q4_0, TypeSet: true}); !errors.Is(err, ErrUnsupported) || !contains(err.Error(), "bits=8") || !contains(err.Error(), "use --type q8_0") {
		t.Errorf("8-bit as q4_0: %v", err)
	}

	asym := rtnCheckpoint(t, materialized(t, "models/qwen2_dense_small"), 32, false)
	ck2, err := hf.Open(asym)
	if err != nil {
		t.Fatal(err)
	}
	defer ck2.Close()
	if _, err := PlanGGUF(ck2, GGUFOptions{}); !errors.Is(err, ErrUnsupported) || !contains(err.Error(), "quantization_config.sym=false") {
		t.Errorf("asymmetric: %v", err)
	}
}

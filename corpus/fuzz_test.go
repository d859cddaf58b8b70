package corpus

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
)

// FuzzReadIDs feeds arbitrary files to ReadIDs under both rules (logits and
// quantize --calib-ids take InputIDs, verify --ids AnyIDs). It must never
// panic, and what it accepts is at least one non-empty sequence, every
// sequence as long, every id a token id.
func FuzzReadIDs(f *testing.F) {
	// the real input_ids of a transformers-made reference, alone in a file
	ref, err := safetensors.Open(filepath.Join(fixturetest.Dir(f, "fixtures/qwen2_moe_tiny"), "reference.safetensors"))
	if err != nil {
		f.Fatal(err)
	}
	in, _ := ref.Tensor(IDsTensor)
	dir := f.TempDir()
	seed := func(name string, ts ...*safetensors.Tensor) {
		p := filepath.Join(dir, name)
		if err := safetensors.WriteFile(p, ts, map[string]string{"format": "pt"}); err != nil {
			f.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, false)
		f.Add(data, true)
	}
	real, err := safetensors.NewTensor(IDsTensor, in.DType, in.Shape, append([]byte(nil), in.Bytes()...)) // a copy: ref is unmapped below
	if err != nil {
		f.Fatal(err)
	}
	ref.Close()
	seed("ref.safetensors", real)
	var i32 []byte
	for _, v := range []int32{5, 1023, 0, -1} {
		i32 = binary.LittleEndian.AppendUint32(i32, uint32(v))
	}
	one, _ := safetensors.NewTensor("ids", safetensors.I32, []int{4}, i32)
	seed("one.safetensors", one)
	f32, _ := safetensors.NewTensor(IDsTensor, safetensors.F32, []int{1, 4}, i32)
	seed("f32.safetensors", f32, one)

	p := filepath.Join(dir, "fuzz.safetensors") // rewritten by each input: a worker runs one at a time
	f.Fuzz(func(t *testing.T, data []byte, any bool) {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		rule := InputIDs
		if any {
			rule = AnyIDs
		}
		seqs, err := ReadIDs(p, rule)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(seqs) == 0 || len(seqs[0]) == 0 {
			t.Fatalf("accepted no tokens: %v", seqs)
		}
		for i, s := range seqs {
			if len(s) != len(seqs[0]) {
				t.Fatalf("sequence %d has %d tokens, sequence 0 %d", i, len(s), len(seqs[0]))
			}
			for j, id := range s {
				if id < 0 || id > math.MaxInt32 {
					t.Fatalf("accepted id %d at [%d, %d]", id, i, j)
				}
			}
		}
	})
}

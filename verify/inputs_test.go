package verify

import (
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/safetensors"
)

// idsFile writes tensors (name, dtype, shape, integer values) to a
// safetensors file and returns its path.
func idsFile(t *testing.T, specs ...idsSpec) string {
	t.Helper()
	var ts []*safetensors.Tensor
	for _, s := range specs {
		var data []byte
		for _, v := range s.vals {
			switch s.dtype {
			case safetensors.I64:
				data = binary.LittleEndian.AppendUint64(data, uint64(v))
			case safetensors.I32, safetensors.F32:
				data = binary.LittleEndian.AppendUint32(data, uint32(int32(v)))
			}
		}
		tn, err := safetensors.NewTensor(s.name, s.dtype, s.shape, data)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tn)
	}
	path := filepath.Join(t.TempDir(), "ids.safetensors")
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

type idsSpec struct {
	name  string
	dtype safetensors.DType
	shape []int
	vals  []int64
}

func TestReadIDs(t *testing.T) {
	ids := []int64{1, 2, 3, 4, 5, 6}
	tests := []struct {
		name  string
		specs []idsSpec
		want  [][]int
		err   string
	}{
		{"i64 [2,3]", []idsSpec{{"input_ids", safetensors.I64, []int{2, 3}, ids}}, [][]int{{1, 2, 3}, {4, 5, 6}}, ""},
		{"i32 [3,2]", []idsSpec{{"input_ids", safetensors.I32, []int{3, 2}, ids}}, [][]int{{1, 2}, {3, 4}, {5, 6}}, ""},
		{"one sequence", []idsSpec{{"input_ids", safetensors.I64, []int{6}, ids}}, [][]int{{1, 2, 3, 4, 5, 6}}, ""},
		{"only tensor, any name", []idsSpec{{"tokens", safetensors.I64, []int{1, 6}, ids}}, [][]int{{1, 2, 3, 4, 5, 6}}, ""},
		{"input_ids among others", []idsSpec{{"logits", safetensors.F32, []int{6}, ids}, {"input_ids", safetensors.I32, []int{2, 3}, ids}}, [][]int{{1, 2, 3}, {4, 5, 6}}, ""},
		{"float ids", []idsSpec{{"input_ids", safetensors.F32, []int{2, 3}, ids}}, nil, "tensor input_ids has dtype F32, want I64 or I32"},
		{"rank 3", []idsSpec{{"input_ids", safetensors.I64, []int{1, 2, 3}, ids}}, nil, "has shape [1 2 3], want [N, T]"},
		{"ambiguous", []idsSpec{{"a", safetensors.I64, []int{6}, ids}, {"b", safetensors.I64, []int{6}, ids}}, nil, `no tensor "input_ids" and 2 tensors`},
		{"negative id", []idsSpec{{"input_ids", safetensors.I64, []int{2, 3}, []int64{1, 2, 3, 4, -5, 6}}}, nil, "input_ids[1, 1] = -5 is not a token id"},
		{"empty", []idsSpec{{"input_ids", safetensors.I64, []int{0, 3}, nil}}, nil, "no tokens"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := idsFile(t, tc.specs...)
			got, err := ReadIDs(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), path) {
					t.Fatalf("error %v, want one naming %s and containing %q", err, path, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := ReadIDs(filepath.Join(t.TempDir(), "missing.safetensors")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestCheckIDs(t *testing.T) {
	tests := []struct {
		name   string
		seqs   [][]int
		maxPos int
		err    string
	}{
		{"ok", [][]int{{0, 9}, {5}}, 2, ""},
		{"unlimited context", [][]int{make([]int, 5000)}, 0, ""},
		{"too long", [][]int{{1}, {1, 2, 3}}, 2, "sequence 1 has 3 tokens, beyond max_position_embeddings=2"},
		{"id too large", [][]int{{1, 10}}, 0, "sequence 0, position 1: token id 10 outside the vocabulary [0, 10)"},
		{"negative", [][]int{{-1}}, 0, "token id -1"},
		{"empty sequence", [][]int{{1}, {}}, 0, "sequence 1 is empty"},
		{"nothing", nil, 0, "no sequences"},
	}
	for _, tc := range tests {
		err := CheckIDs(tc.seqs, 10, tc.maxPos)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
}

package corpus

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

// TestReadIDs: the AnyIDs rule (verify --ids).
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
			got, err := ReadIDs(path, AnyIDs)
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
	if _, err := ReadIDs(filepath.Join(t.TempDir(), "missing.safetensors"), AnyIDs); err == nil {
		t.Error("missing file accepted")
	}
}

// TestReadInputIDs: the InputIDs rule (logits --ids, quantize --calib-ids)
// takes the tensor input_ids [N, T] only.
func TestReadInputIDs(t *testing.T) {
	ids := []int64{1, 2, 3, 4, 5, 6}
	path := idsFile(t, idsSpec{"logits", safetensors.F32, []int{6}, ids}, idsSpec{"input_ids", safetensors.I32, []int{2, 3}, ids})
	got, err := ReadIDs(path, InputIDs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]int{{1, 2, 3}, {4, 5, 6}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		name string
		spec idsSpec
		err  string
	}{
		{"only tensor, other name", idsSpec{"ids", safetensors.I64, []int{1, 6}, ids}, "no tensor input_ids (want input_ids [N, T] of I64 or I32; the file has [ids])"},
		{"one sequence", idsSpec{"input_ids", safetensors.I64, []int{6}, ids}, "tensor input_ids has shape [6], want [N, T]"},
		{"negative id", idsSpec{"input_ids", safetensors.I64, []int{2, 3}, []int64{1, 2, 3, 4, -5, 6}}, "input_ids[1, 1] = -5 is not a token id"},
	} {
		path := idsFile(t, tc.spec)
		if _, err := ReadIDs(path, InputIDs); err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want one naming %s and containing %q", tc.name, err, path, tc.err)
		}
	}
}

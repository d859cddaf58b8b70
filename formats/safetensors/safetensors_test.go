package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/internal/half"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fixturetest.Cleanup()
	os.Exit(code)
}

var fixtures = []string{"mixtral_tiny", "qwen2_dense_tiny", "qwen2_moe_tiny", "qwen2_moe_tiny_sharded"}

// build assembles a safetensors file from a raw header and data.
func build(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func TestParseValid(t *testing.T) {
	data := make([]byte, 24)
	for i := range 4 {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(float32(i)+0.5))
	}
	f, err := Parse("x.safetensors", build(`{"b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{"format":"pt"}}  `, data))
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{f.Tensors()[0].Name, f.Tensors()[1].Name}; !cmp.Equal(got, []string{"a", "b"}) {
		t.Errorf("tensors not in offset order: %v", got)
	}
	a, _ := f.Tensor("a")
	v, err := a.Float32()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]float32{0.5, 1.5, 2.5, 3.5}, v); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff(map[string]string{"format": "pt"}, f.Metadata); diff != "" {
		t.Error(diff)
	}
}

// TestParseRejects covers every malformed case the reference reader rejects
// (FORMATS.md), plus the stricter rules moeforge adds. Each error must name
// the file and, where there is one, the tensor.
func TestParseRejects(t *testing.T) {
	f32x2 := `{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`
	cases := []struct {
		name   string
		file   []byte
		errHas []string
	}{
		{"empty", nil, []string{"shorter than the 8-byte header"}},
		{"short", []byte{1, 2, 3}, []string{"shorter than the 8-byte header"}},
		{"huge header", binary.LittleEndian.AppendUint64(nil, 100_000_001), []string{"exceeds the limit"}},
		{"header past EOF", append(binary.LittleEndian.AppendUint64(nil, 64), `{"a":1}`...), []string{"runs past the end"}},
		{"bad utf8", build("{\"\xff\":1}", nil), []string{"UTF-8"}},
		{"not json", build(`{"a":`, nil), []string{"not valid JSON"}},
		{"not object", build(`[1,2]   `, nil), []string{"start with '{'"}},
		{"trailing json", build(`{} {}`, nil), []string{"after its JSON object"}},
		{"duplicate", build(`{"a":`+f32x2+`,"a":`+f32x2+`}`, make([]byte, 8)), []string{`"a" twice`}},
		{"unknown dtype", build(`{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}}`, make([]byte, 2)), []string{`"w"`, "unsupported dtype"}},
		{"unknown field", build(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, make([]byte, 8)), []string{`"w"`}},
		{"missing shape", build(`{"w":{"dtype":"F32","data_offsets":[0,0]}}`, nil), []string{`"w"`, "missing shape"}},
		{"negative dim", build(`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, nil), []string{`"w"`}},
		{"three offsets", build(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, make([]byte, 8)), []string{`"w"`, "2 entries"}},
		{"size mismatch", build(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), []string{`"w"`, "needs 12 bytes"}},
		{"reversed offsets", build(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, make([]byte, 8)), []string{`"w"`, "end before"}},
		{"overflow", build(`{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, make([]byte, 8)), []string{`"w"`, "overflows"}},
		{"gap", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, make([]byte, 12)), []string{`"b"`, "gap"}},
		{"overlap", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), []string{`"b"`, "overlap"}},
		{"not from zero", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), []string{`"a"`, "gap"}},
		{"truncated", build(`{"a":`+f32x2+`}`, make([]byte, 5)), []string{"truncated"}},
		{"trailing bytes", build(`{"a":`+f32x2+`}`, make([]byte, 9)), []string{"1 trailing bytes"}},
		{"bad metadata", build(`{"__metadata__":{"a":1}}`, nil), []string{"__metadata__"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("bad.safetensors", c.file)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			for _, want := range append([]string{"bad.safetensors"}, c.errHas...) {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "none.safetensors")); err == nil || !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: %v", err)
	}
}

// TestRoundTrip reads every fixture checkpoint and writes it back, one shard
// and many shards, and requires identical tensors (names, dtypes, shapes, bytes).
func TestRoundTrip(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			src, err := OpenDir(filepath.Join(fixturetest.Dir(t, "fixtures/"+name), "model"))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			for _, shardSize := range []int64{0, 300_000} {
				out := t.TempDir()
				var plan []Info
				for _, n := range src.Names() {
					tt, _ := src.Tensor(n)
					plan = append(plan, InfoOf(tt))
				}
				w, err := NewDirWriter(out, plan, WriterOptions{MaxShardSize: shardSize})
				if err != nil {
					t.Fatal(err)
				}
				for _, in := range plan {
					tt, _ := src.Tensor(in.Name)
					if err := w.Write(in.Name, tt.Bytes()); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				back, err := OpenDir(out)
				if err != nil {
					t.Fatal(err)
				}
				if shardSize == 0 && len(back.Files) != 1 || shardSize > 0 && len(back.Files) < 2 {
					t.Errorf("shard size %d gave %d shards", shardSize, len(back.Files))
				}
				for _, f := range back.Files {
					if f.Metadata["format"] != "pt" {
						t.Errorf("%s: __metadata__.format = %q", f.Path, f.Metadata["format"])
					}
					hl := binary.LittleEndian.Uint64(f.data[:8])
					if hl%8 != 0 {
						t.Errorf("%s: header length %d not a multiple of 8", f.Path, hl)
					}
				}
				if diff := cmp.Diff(src.Names(), back.Names()); diff != "" {
					t.Fatal(diff)
				}
				for _, n := range src.Names() {
					a, _ := src.Tensor(n)
					b, _ := back.Tensor(n)
					if a.DType != b.DType || !cmp.Equal(a.Shape, b.Shape) || string(a.Bytes()) != string(b.Bytes()) {
						t.Errorf("%s differs after round trip", n)
					}
				}
				back.Close()
			}
		})
	}
}

// TestShardedBF16MatchesF32 checks that every tensor of the sharded bf16
// fixture is the single-file f32 fixture's tensor rounded to nearest even.
func TestShardedBF16MatchesF32(t *testing.T) {
	f32, err := OpenDir(filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny"), "model"))
	if err != nil {
		t.Fatal(err)
	}
	defer f32.Close()
	bf, err := OpenDir(filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny_sharded"), "model"))
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	if len(bf.Files) != 14 || bf.Index == nil {
		t.Fatalf("sharded fixture opened as %d files, index %v", len(bf.Files), bf.Index != nil)
	}
	if diff := cmp.Diff(f32.Names(), bf.Names()); diff != "" {
		t.Fatal(diff)
	}
	for _, n := range f32.Names() {
		a, _ := f32.Tensor(n)
		b, _ := bf.Tensor(n)
		if b.DType != BF16 || !cmp.Equal(a.Shape, b.Shape) {
			t.Fatalf("%s: %s %v vs %s %v", n, a.DType, a.Shape, b.DType, b.Shape)
		}
		av, _ := a.Float32()
		bits, ok := b.U16View()
		if !ok {
			t.Fatal("bf16 view failed")
		}
		for i, v := range av {
			if half.F32ToBF16(v) != bits[i] {
				t.Fatalf("%s[%d]: f32 %v rounds to %#04x, file has %#04x", n, i, v, half.F32ToBF16(v), bits[i])
			}
		}
	}
}

// shardedCopy writes a two-shard checkpoint (a, b | c) and returns its directory.
func shardedCopy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mk := func(name string, v float32) *Tensor {
		b := binary.LittleEndian.AppendUint32(nil, math.Float32bits(v))
		tt, err := NewTensor(name, F32, []int{1}, b)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	w, err := NewDirWriter(dir, []Info{{"a", F32, []int{1}}, {"b", F32, []int{1}}, {"c", F32, []int{1}}}, WriterOptions{MaxShardSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []*Tensor{mk("a", 1), mk("b", 2), mk("c", 3)} {
		if err := w.Write(tt.Name, tt.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestIndexErrors(t *testing.T) {
	editIndex := func(t *testing.T, dir string, edit func(idx map[string]any)) {
		p := filepath.Join(dir, IndexFile)
		raw, _ := os.ReadFile(p)
		var idx map[string]any
		json.Unmarshal(raw, &idx)
		edit(idx)
		raw, _ = json.Marshal(idx)
		os.WriteFile(p, raw, 0o644)
	}
	cases := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string
	}{
		{"valid", func(t *testing.T, dir string) {}, ""},
		{"missing shard", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model-00002-of-00002.safetensors"))
		}, "does not exist"},
		{"listed but absent", func(t *testing.T, dir string) {
			editIndex(t, dir, func(idx map[string]any) { idx["weight_map"].(map[string]any)["c"] = "model-00001-of-00002.safetensors" })
		}, `tensor "c" is listed`},
		{"wrong shard", func(t *testing.T, dir string) {
			editIndex(t, dir, func(idx map[string]any) { idx["weight_map"].(map[string]any)["a"] = "model-00002-of-00002.safetensors" })
		}, `but found in`},
		{"in two shards", func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, "model-00001-of-00002.safetensors"))
			os.WriteFile(filepath.Join(dir, "model-00002-of-00002.safetensors"), data, 0o644)
		}, "in two shards"},
		{"not listed", func(t *testing.T, dir string) {
			editIndex(t, dir, func(idx map[string]any) { delete(idx["weight_map"].(map[string]any), "b") })
		}, "not listed"},
		{"total size", func(t *testing.T, dir string) {
			editIndex(t, dir, func(idx map[string]any) { idx["metadata"].(map[string]any)["total_size"] = 9 })
		}, "total_size"},
		{"bad json", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, IndexFile), []byte("{"), 0o644)
		}, IndexFile},
		{"path escape", func(t *testing.T, dir string) {
			editIndex(t, dir, func(idx map[string]any) { idx["weight_map"].(map[string]any)["a"] = "../x.safetensors" })
		}, "invalid shard name"},
		{"no index", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, IndexFile)) }, "without its index"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := shardedCopy(t)
			c.break_(t, dir)
			s, err := OpenDir(dir)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestWriterPlanErrors(t *testing.T) {
	dir := t.TempDir()
	w, err := NewDirWriter(dir, []Info{{"a", F32, []int{2}}, {"b", BF16, []int{3}}}, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write("b", make([]byte, 6)); err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Errorf("out of order write: %v", err)
	}
	if err := w.Write("a", make([]byte, 7)); err == nil || !strings.Contains(err.Error(), "needs 8 bytes") {
		t.Errorf("wrong size: %v", err)
	}
	if err := w.Write("a", make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), `"b" was planned`) {
		t.Errorf("close with missing tensor: %v", err)
	}
	if _, err := NewDirWriter(dir, []Info{{"a", F32, nil}, {"a", F32, nil}}, WriterOptions{}); err == nil {
		t.Error("duplicate names accepted")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"5GB": 5e9, "500MB": 5e8, "2GiB": 2 << 30, "1000": 1000, "1.5kb": 1500} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "GB", "-1MB", "x"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestConversions(t *testing.T) {
	f16 := []uint16{half.F32ToF16(1.5), half.F32ToF16(-2)}
	b := binary.LittleEndian.AppendUint16(nil, f16[0])
	b = binary.LittleEndian.AppendUint16(b, f16[1])
	tt, _ := NewTensor("h", F16, []int{2}, b)
	v, err := tt.Float32()
	if err != nil || !cmp.Equal(v, []float32{1.5, -2}) {
		t.Errorf("F16: %v %v", v, err)
	}
	d := binary.LittleEndian.AppendUint64(nil, math.Float64bits(0.1))
	tt, _ = NewTensor("d", F64, []int{1}, d)
	v, _ = tt.Float32()
	if v[0] != float32(0.1) {
		t.Errorf("F64: %v", v)
	}
	ids := binary.LittleEndian.AppendUint32(nil, uint32(0xffffffff))
	tt, _ = NewTensor("i", I32, []int{1}, ids)
	iv, _ := tt.Int64s()
	if iv[0] != -1 {
		t.Errorf("I32: %v", iv)
	}
	tt, _ = NewTensor("e4m3", F8E4M3, []int{3}, []byte{0x38, 0xc0, 0x01})
	v, _ = tt.Float32()
	if !cmp.Equal(v, []float32{1, -2, 1.0 / 512}) {
		t.Errorf("F8_E4M3: %v", v)
	}
	if _, err := tt.Int64s(); err == nil {
		t.Error("float tensor converted to ints")
	}
}

func TestTokenIDs(t *testing.T) {
	var b []byte
	for _, v := range []int64{1, 2, 3, 4, 5, 6} {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	two, _ := NewTensor("input_ids", I64, []int{2, 3}, b)
	seqs, err := two.TokenIDs()
	if err != nil || !cmp.Equal(seqs, [][]int{{1, 2, 3}, {4, 5, 6}}) {
		t.Errorf("[2,3]: %v %v", seqs, err)
	}
	one, _ := NewTensor("ids", I64, []int{6}, b)
	if seqs, err := one.TokenIDs(); err != nil || len(seqs) != 1 || len(seqs[0]) != 6 {
		t.Errorf("[6]: %v %v", seqs, err)
	}
	for _, bad := range []*Tensor{
		{Name: "f", DType: F32, Shape: []int{2}, data: make([]byte, 8)},
		{Name: "r3", DType: I32, Shape: []int{1, 1, 2}, data: make([]byte, 8)},
		{Name: "empty", DType: I32, Shape: []int{0, 4}, data: nil},
	} {
		if _, err := bad.TokenIDs(); err == nil || !strings.Contains(err.Error(), bad.Name) {
			t.Errorf("%s: err = %v", bad.Name, err)
		}
	}
}

package safetensors

import (
	"os"
	"path/filepath"
	"testing"

	ref "github.com/nlpodyssey/safetensors"

	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
)

// FuzzParse feeds arbitrary bytes to the header parser. It must never panic,
// and whatever it accepts must be accepted by the reference Go
// implementation too (for the dtypes that one knows): moeforge is at least as
// strict. Every accepted tensor's view must lie inside the file.
func FuzzParse(f *testing.F) {
	f.Add(build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(build(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]},"b":{"dtype":"I64","shape":[],"data_offsets":[4,12]}}`, make([]byte, 12)))
	f.Add(build(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}`, nil))
	f.Add(build(`{}`, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		known := true
		for _, tt := range file.Tensors() {
			if int64(len(tt.Bytes())) != tt.ByteSize() {
				t.Fatalf("%s: view of %d bytes, want %d", tt.Name, len(tt.Bytes()), tt.ByteSize())
			}
			switch tt.DType {
			case F8E4M3, F8E5M2, F8E8M0:
				known = false
			}
		}
		if known {
			if _, err := ref.Deserialize(data); err != nil {
				t.Fatalf("moeforge accepted a file the reference rejects: %v", err)
			}
		}
	})
}

// shardLinks makes a directory holding links to the shards of the fixture
// qwen2_moe_tiny_sharded (not its index) and returns it with the index's
// real content.
func shardLinks(f *testing.F) (dir string, index []byte) {
	src := filepath.Join(fixturetest.Dir(f, "fixtures/qwen2_moe_tiny_sharded"), "model")
	shards, err := filepath.Glob(filepath.Join(src, "*.safetensors"))
	if err != nil || len(shards) == 0 {
		f.Fatalf("no shards in %s: %v", src, err)
	}
	dir = f.TempDir()
	for _, s := range shards {
		if err := os.Symlink(s, filepath.Join(dir, filepath.Base(s))); err != nil {
			f.Fatal(err)
		}
	}
	index, err = os.ReadFile(filepath.Join(src, IndexFile))
	if err != nil {
		f.Fatal(err)
	}
	return dir, index
}

// FuzzOpenDir feeds arbitrary model.safetensors.index.json files to
// OpenDir over the 14 real shards of qwen2_moe_tiny_sharded. It must never
// panic, and a set it opens agrees with its index: every listed tensor
// found in the shard the index names, nothing unlisted.
func FuzzOpenDir(f *testing.F) {
	dir, index := shardLinks(f)
	f.Add(index)
	f.Add([]byte(`{"metadata": {"total_size": 2}, "weight_map": {"lm_head.weight": "model-00014-of-00014.safetensors"}}`))
	f.Add([]byte(`{"weight_map": {"a": "../x.safetensors"}}`))
	f.Add([]byte(`{"metadata": null, "weight_map": {}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, IndexFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		set, err := OpenDir(dir)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		defer set.Close()
		if set.Index == nil || set.Len() != len(set.Index.WeightMap) {
			t.Fatalf("%d tensors for an index of %v", set.Len(), set.Index)
		}
		for name, shard := range set.Index.WeightMap {
			tn, ok := set.Tensor(name)
			if !ok || filepath.Base(tn.File) != shard {
				t.Fatalf("tensor %s: listed in %s, found %v", name, shard, ok)
			}
		}
	})
}

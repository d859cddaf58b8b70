package quantize

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/outdir"
)

// CheckpointDir is the name of the resume state directory that the command
// line keeps inside the temporary output directory (Options.Checkpoint).
const CheckpointDir = ".moeforge-quantize-resume"

// Resume state (Options.Checkpoint): after every finished layer i,
//
//	layer-%05d.bin  the bytes of layer i's output tensors, in plan order
//	acts-%05d.f32   the calibration hidden states entering layer i+1
//	                (little-endian float32, chunk after chunk; GPTQ only)
//	state.json      manifest: what the run is (fingerprint), how many
//	                layers are done, their module reports and starved experts
//
// state.json is replaced atomically last, so a run killed at any point
// leaves a state that names only complete files.
type resumeState struct {
	Fingerprint string          `json:"fingerprint"`
	Layers      int             `json:"layers_done"`
	Modules     []savedModule   `json:"modules"`
	Starved     []StarvedExpert `json:"starved_experts"`
	Done        int             `json:"modules_done"`
}

type savedModule struct {
	ModuleReport
	Order int `json:"order"`
}

const stateFile = "state.json"

// fingerprint identifies a run: input config and weight files, every
// setting that changes the output, and the calibration tokens.
func (r *runner) fingerprint(calib [][]int) (string, error) {
	h := sha256.New()
	cfg, err := os.ReadFile(filepath.Join(r.ck.Dir, "config.json"))
	if err != nil {
		return "", err
	}
	h.Write(cfg)
	for _, f := range r.ck.Weights.Files {
		fmt.Fprintf(h, "\x00%s %d", filepath.Base(f.Path), f.Size())
	}
	o := r.opt
	settings, err := json.Marshal(struct {
		M  Method
		C  any
		T  int
		F  Fallback
		CT int
		MC MoECalib
	}{o.Method, o.Config, o.MinExpertTokens, o.ExpertFallback, o.ChunkTokens, o.MoECalib})
	if err != nil {
		return "", err
	}
	h.Write(settings)
	var b [8]byte
	for _, s := range calib {
		binary.LittleEndian.PutUint64(b[:], uint64(len(s)))
		h.Write(b[:])
		for _, id := range s {
			binary.LittleEndian.PutUint64(b[:], uint64(id))
			h.Write(b[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// loadResume reads the state in dir; nil when there is none. A state made
// by another run is an error naming the directory.
func loadResume(dir, fp string) (*resumeState, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st resumeState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("resume state %s: %w", filepath.Join(dir, stateFile), err)
	}
	if st.Fingerprint != fp {
		return nil, fmt.Errorf("resume state in %s was made from another input, settings or calibration; remove it to start over", dir)
	}
	return &st, nil
}

// layerPlan returns the planned tensors of layer i (norms and linears).
func layerPlan(plan []safetensors.Info, c *hf.Config, i int) []safetensors.Info {
	prefix := hf.LayerPrefix(i)
	var out []safetensors.Info
	for _, in := range plan {
		if len(in.Name) > len(prefix) && in.Name[:len(prefix)] == prefix {
			out = append(out, in)
		}
	}
	return out
}

// replayLayer writes layer i's saved tensors to the output.
func (r *runner) replayLayer(i int) error {
	path := filepath.Join(r.opt.Checkpoint, fmt.Sprintf("layer-%05d.bin", i))
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	for _, in := range layerPlan(r.planned, r.ck.Config, i) {
		buf := make([]byte, in.ByteSize())
		if _, err := io.ReadFull(br, buf); err != nil {
			return fmt.Errorf("resume state %s: %s: %w", path, in.Name, err)
		}
		if err := r.w.WriteTensor(in.Name, buf); err != nil {
			return err
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return fmt.Errorf("resume state %s is longer than layer %d's tensors", path, i)
	}
	return nil
}

// lmHeadNeedsActs reports whether lm_head is quantized with GPTQ from the
// last layer's outputs, which then are computed and checkpointed too.
func (r *runner) lmHeadNeedsActs() bool {
	return r.acts != nil && r.opt.quantizes(lmHeadSpec(r.ck.Config))
}

// stage calls the test hook inject at the start of a stage of layer i.
func (r *runner) stage(i int, name string) error {
	if r.opt.inject == nil {
		return nil
	}
	return r.opt.inject(i, name)
}

// writeTensor is the writer's WriteTensor, also recording the bytes in the
// current layer's resume file when one is open.
func (r *runner) writeTensor(name string, data []byte) error {
	if r.layerFile != nil {
		if _, err := r.layerFile.Write(data); err != nil {
			return err
		}
	}
	return r.w.WriteTensor(name, data)
}

// beginLayer opens layer i's resume file (no-op without a checkpoint).
func (r *runner) beginLayer(i int) error {
	if r.opt.Checkpoint == "" {
		return nil
	}
	f, err := os.Create(filepath.Join(r.opt.Checkpoint, fmt.Sprintf("layer-%05d.bin.tmp", i)))
	if err != nil {
		return err
	}
	r.layerFileOS = f
	r.layerFile = bufio.NewWriterSize(f, 1<<20)
	return nil
}

// endLayer completes layer i's resume state: its tensors, the next layer's
// inputs, then the manifest. The writing and syncing run in the background
// (overlapping the next layer's work) in that order, after the previous
// layer's save has finished; waitSave waits for them and returns their
// error. The state is taken now: the report so far and a copy of the next
// layer's inputs, which that layer modifies in place (with --spill the
// inputs are saved before endLayer returns, since the next layer's stores
// replace their files).
func (r *runner) endLayer(i int) error {
	if r.opt.Checkpoint == "" {
		return nil
	}
	if err := r.waitSave(); err != nil {
		return err
	}
	dir := r.opt.Checkpoint
	lf, lfOS := r.layerFile, r.layerFileOS
	r.layerFile, r.layerFileOS = nil, nil
	actsPath := ""
	var acts [][]float32
	if r.acts != nil && (i+1 < len(r.m.Layers) || r.lmHeadNeedsActs()) {
		actsPath = filepath.Join(dir, fmt.Sprintf("acts-%05d.f32", i+1))
		if r.acts.spill != "" {
			if err := saveActs(actsPath, r.acts.load, len(r.acts.chunks)); err != nil {
				lfOS.Close()
				return err
			}
			actsPath = ""
		} else {
			for _, c := range r.acts.chunks {
				acts = append(acts, slices.Clone(c.data))
			}
		}
	}
	r.mu.Lock()
	st := resumeState{Fingerprint: r.fp, Layers: i + 1, Starved: slices.Clone(r.rep.Starved), Done: r.done}
	for _, m := range r.rep.Modules {
		st.Modules = append(st.Modules, savedModule{m, m.order})
	}
	r.mu.Unlock()
	data, err := json.Marshal(st)
	if err != nil {
		lfOS.Close()
		return err
	}
	done := make(chan error, 1)
	r.saving = done
	go func() {
		err := lf.Flush()
		if err == nil {
			err = lfOS.Sync()
		}
		if cerr := lfOS.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(filepath.Join(dir, fmt.Sprintf("layer-%05d.bin.tmp", i)), filepath.Join(dir, fmt.Sprintf("layer-%05d.bin", i)))
		}
		if err == nil && actsPath != "" {
			err = saveActs(actsPath, func(k int) ([]float32, error) { return acts[k], nil }, len(acts))
		}
		tmp := filepath.Join(dir, stateFile+".tmp")
		if err == nil {
			err = writeSynced(tmp, data)
		}
		if err == nil {
			err = os.Rename(tmp, filepath.Join(dir, stateFile))
		}
		if err == nil {
			// From now on an interrupt (Ctrl-C) keeps the state for --resume.
			outdir.Preserve(dir)
			// The previous layer's inputs are no longer needed.
			os.Remove(filepath.Join(dir, fmt.Sprintf("acts-%05d.f32", i)))
		}
		done <- err
	}()
	return nil
}

// waitSave waits for the resume save endLayer started, if any, and returns
// its error.
func (r *runner) waitSave() error {
	if r.saving == nil {
		return nil
	}
	err := <-r.saving
	r.saving = nil
	return err
}

func writeSynced(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// saveActs writes the hidden states of chunks 0 … n−1 (from load) to path
// (atomically).
func saveActs(path string, load func(int) ([]float32, error), n int) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	buf := make([]byte, 4<<10)
	for i := range n {
		x, err := load(i)
		if err != nil {
			f.Close()
			return err
		}
		for len(x) > 0 {
			n := min(len(x), len(buf)/4)
			for k, v := range x[:n] {
				binary.LittleEndian.PutUint32(buf[4*k:], math.Float32bits(v))
			}
			if _, err := w.Write(buf[:4*n]); err != nil {
				f.Close()
				return err
			}
			x = x[n:]
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// loadActs reads the hidden states entering layer i into the store.
func (r *runner) loadActs(i int) error {
	path := filepath.Join(r.opt.Checkpoint, fmt.Sprintf("acts-%05d.f32", i))
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("resume state: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, 4<<10)
	for k, ch := range r.acts.chunks {
		x := make([]float32, ch.rows*r.acts.hidden)
		for off := 0; off < len(x); {
			n := min(len(x)-off, len(buf)/4)
			if _, err := io.ReadFull(br, buf[:4*n]); err != nil {
				return fmt.Errorf("resume state %s: %w", path, err)
			}
			for j := range n {
				x[off+j] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*j:]))
			}
			off += n
		}
		if err := r.acts.store(k, x); err != nil {
			return err
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return fmt.Errorf("resume state %s is longer than the calibration activations", path)
	}
	return nil
}

// restore takes the finished layers' reports from st.
func (r *runner) restore(st *resumeState) {
	for _, m := range st.Modules {
		rep := m.ModuleReport
		rep.order = m.Order
		r.rep.Modules = append(r.rep.Modules, rep)
	}
	r.rep.Starved = append(r.rep.Starved, st.Starved...)
	r.done = st.Done
}

// AdoptState looks for the resume state of an interrupted run writing out
// (in the temporary output directories it left beside out, newest first),
// moves it to into (the new run's Options.Checkpoint) and removes the rest
// of that directory. It returns the directory it came from, "" when there
// was none.
func AdoptState(out, into string) (string, error) {
	dirs, err := outdir.Leftovers(out)
	if err != nil {
		return "", err
	}
	for _, d := range dirs {
		src := filepath.Join(d, CheckpointDir)
		if _, err := os.Stat(filepath.Join(src, stateFile)); err != nil {
			continue
		}
		if err := os.RemoveAll(into); err != nil {
			return "", err
		}
		if err := os.Rename(src, into); err != nil {
			return "", fmt.Errorf("resume: %w", err)
		}
		return d, os.RemoveAll(d)
	}
	return "", nil
}

// LeftState returns the newest temporary output directory beside out that
// holds an interrupted run's resume state ("" when none).
func LeftState(out string) string {
	dirs, _ := outdir.Leftovers(out)
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, CheckpointDir, stateFile)); err == nil {
			return d
		}
	}
	return ""
}

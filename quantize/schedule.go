package quantize

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/model"
)

// Run quantizes the checkpoint ck into dir (an existing empty directory)
// with shards of at most opt.MaxShardSize: RunTo through
// hf.NewWriter(dir). On error dir may hold a partial checkpoint.
func Run(ctx context.Context, ck *hf.Checkpoint, dir string, calib [][]int, opt Options) (*Report, error) {
	w := hf.NewWriter(dir, hf.WriterOptions{MaxShardSize: opt.MaxShardSize})
	rep, err := RunTo(ctx, ck, w, calib, opt)
	if err != nil {
		w.Abort()
	}
	return rep, err
}

// RunTo quantizes the checkpoint ck through the checkpoint writer w (whose
// options, not opt.MaxShardSize, size the shards): weights streamed layer
// by layer into model.safetensors (or shards), config.json with
// quantization_config, quantize_config.json, and every non-weight file of
// ck. calib holds the calibration token sequences (unused by RTN). Every
// option is validated before any work. The caller commits or aborts w.
//
// Unless the GOGC environment variable is set, the garbage collector runs
// at GOGC=25 while RunTo works: nearly all of its heap is float buffers
// without pointers, which a collection does not scan, so collecting more
// often costs little CPU and keeps the peak heap near what is live instead
// of twice that.
func RunTo(ctx context.Context, ck *hf.Checkpoint, w *hf.Writer, calib [][]int, opt Options) (*Report, error) {
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(gcPercent))
	}
	if path := os.Getenv("MOEFORGE_QUANTIZE_CPUPROFILE"); path != "" {
		// A developer's hook: a CPU profile of the whole run (go tool pprof).
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	opt.calibSeqs = len(calib)
	start := time.Now()
	c := ck.Config
	if c.Quantization != nil {
		return nil, fmt.Errorf("%s is already GPTQ-quantized (quantization_config in config.json)", ck.Dir)
	}
	if err := opt.validate(c); err != nil {
		return nil, err
	}
	m, err := model.Load(ck)
	if err != nil {
		return nil, err
	}
	minTok := "in_features/8"
	if opt.MinExpertTokens >= 0 {
		minTok = fmt.Sprint(opt.MinExpertTokens)
	}
	r := &runner{ctx: ctx, ck: ck, m: m, opt: opt, w: w, clock: newClock(), rep: &Report{
		Input: ck.Dir, Output: w.Dir(), Method: opt.Method, Bits: opt.Config.Bits, GroupSize: opt.Config.GroupSize, Sym: opt.Config.Sym,
		DescAct: opt.Config.DescAct, StaticGroups: opt.Config.StaticGroups, Damp: opt.Config.DampPercent,
		TrueSequential: opt.Config.TrueSequential, MinExpertTokens: minTok, ExpertFallback: opt.ExpertFallback, MoECalib: opt.MoECalib.String(),
		CheckpointFormat: opt.Config.CheckpointFormat, Dynamic: describeDynamic(opt.Config.Dynamic), LMHead: opt.Config.LMHead,
		Calibration: opt.Calibration, GroupNames: GroupNames, Starved: []StarvedExpert{}}}
	if err := r.run(calib); err != nil {
		return nil, err
	}
	r.rep.Seconds = time.Since(start).Seconds()
	r.rep.Phases = r.clock.phases(r.rep.Seconds)
	r.rep.finish()
	return r.rep, nil
}

// gcPercent is the GOGC of a run (see RunTo).
const gcPercent = 25

type runner struct {
	ctx   context.Context
	ck    *hf.Checkpoint
	m     *model.Model
	opt   Options
	rep   *Report
	w     *hf.Writer
	acts  *activations
	clock *clock

	planned     []safetensors.Info
	fp          string        // run fingerprint (with a checkpoint)
	layerFile   *bufio.Writer // the current layer's resume file
	layerFileOS *os.File

	mu          sync.Mutex // guards rep.Modules, done and packed
	done, total int
	// packed holds the packed tensors of installed modules until
	// writeQuantized writes them.
	packed map[*gptq.Layer]*gptq.Packed
	saving chan error // the resume save in progress (endLayer), or nil
}

func (r *runner) run(calib [][]int) error {
	c := r.ck.Config
	plan, err := r.plan()
	if err != nil {
		return err
	}
	if _, err = r.w.Plan(plan); err != nil {
		return err
	}
	r.planned = plan
	defer func() {
		if r.layerFileOS != nil {
			r.layerFileOS.Close()
		}
		r.waitSave() // an error return already has its error
	}()
	var st *resumeState
	if r.opt.Checkpoint != "" {
		if err := os.MkdirAll(r.opt.Checkpoint, 0o755); err != nil {
			return err
		}
		if r.fp, err = r.fingerprint(calib); err != nil {
			return err
		}
		if st, err = loadResume(r.opt.Checkpoint, r.fp); err != nil {
			return err
		}
	}
	start := 0
	if st != nil {
		start = min(st.Layers, c.NumHiddenLayers)
		r.restore(st)
		r.rep.ResumedLayers = start
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		for _, l := range c.LayerLinears(i) {
			if r.opt.quantizes(l) {
				r.total++
			}
		}
	}
	if r.opt.quantizes(lmHeadSpec(c)) {
		r.total++
	}
	if err := r.writeRaw(hf.EmbedTokens); err != nil {
		return err
	}
	if r.opt.Method == MethodGPTQ {
		if r.acts, err = newActivations(calib, r.opt.ChunkTokens, c.HiddenSize, r.opt.SpillDir); err != nil {
			return err
		}
		defer r.acts.close()
		if start > 0 && (start < c.NumHiddenLayers || r.lmHeadNeedsActs()) {
			if err := r.loadActs(start); err != nil {
				return err
			}
		} else if start == 0 {
			for i, ch := range r.acts.chunks {
				x, err := r.m.Embed(&model.Batch{Seqs: ch.seqs})
				if err != nil {
					return fmt.Errorf("calibration: %w", err)
				}
				if err := r.acts.store(i, x); err != nil {
					return err
				}
			}
		}
	}
	for i := 0; i < start; i++ {
		if err := r.replayLayer(i); err != nil {
			return err
		}
	}
	for _, l := range r.m.Layers[start:] {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if err := r.beginLayer(l.Index); err != nil {
			return err
		}
		type weights struct {
			w    gemm.Matrix
			bias []float32
		}
		orig := map[*model.Linear]weights{}
		for _, lin := range l.Linears() {
			orig[lin] = weights{lin.W, lin.Bias}
		}
		var q map[*model.Linear]*gptq.Layer
		switch {
		case r.opt.Method == MethodGPTQ && r.opt.Config.TrueSequential && !r.opt.legacySchedule && r.seqSupports(l):
			q, err = r.seqLayer(l)
		case r.opt.Method == MethodGPTQ:
			q, err = r.gptqLayer(l)
		default:
			q, err = r.rtnLayer(l)
		}
		if err == nil {
			err = r.writeLayer(l, q)
		}
		if err == nil {
			err = r.endLayer(l.Index)
		}
		// Give the layer its original weights back: the quantized ones are
		// written, and the model stays the caller's float model.
		for lin, w := range orig {
			lin.W, lin.Bias = w.w, w.bias
		}
		if err != nil {
			return err
		}
		r.releaseLayer(l.Index)
	}
	if err := r.writeRaw(hf.FinalNorm); err != nil {
		return err
	}
	if r.opt.quantizes(lmHeadSpec(c)) {
		if err := r.stage(c.NumHiddenLayers, "lm_head"); err != nil {
			return err
		}
		if err := r.lmHead(); err != nil {
			return err
		}
	} else if !c.TieWordEmbeddings {
		if err := r.writeRaw(hf.LMHead + ".weight"); err != nil {
			return err
		}
	}
	if err := r.w.CloseTensors(); err != nil {
		return err
	}
	if err := r.writeConfigs(); err != nil {
		return err
	}
	if r.opt.Checkpoint != "" {
		// The run is complete: its resume state is not part of the output.
		if err := r.waitSave(); err != nil {
			return err
		}
		return os.RemoveAll(r.opt.Checkpoint)
	}
	return nil
}

// lmHead quantizes lm_head (--lm-head) and writes it: GPTQ with the Hessian
// of the final norm's outputs over every calibration token (the stored
// activations are the last layer's outputs), or RTN. A tied head is
// quantized from the embedding matrix, which stays float.
func (r *runner) lmHead() error {
	lin := r.m.LMHead
	spec := lmHeadSpec(r.ck.Config)
	jb := &job{mod: &stageModule{lin: lin, group: 0, expert: -1}, layer: len(r.m.Layers), rtn: r.opt.Method == MethodRTN}
	if !jb.rtn {
		hs := NewHessian(lin.In())
		for i := range r.acts.chunks {
			x, err := r.acts.load(i)
			if err != nil {
				return err
			}
			r.m.FinalNorm(x)
			hs.Add(x, len(x)/lin.In())
		}
		jb.mod.hess, jb.tokens = hs, hs.Rows
	}
	orig := lin.W
	err := r.runJobs([]*job{jb}, -1)
	lin.W = orig
	if err != nil {
		return err
	}
	return r.writeQuantized(spec, lin, jb.result)
}

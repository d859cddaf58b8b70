package quantize

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
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
func RunTo(ctx context.Context, ck *hf.Checkpoint, w *hf.Writer, calib [][]int, opt Options) (*Report, error) {
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
	r := &runner{ctx: ctx, ck: ck, m: m, opt: opt, w: w, rep: &Report{
		Input: ck.Dir, Output: w.Dir(), Method: opt.Method, Bits: opt.Config.Bits, GroupSize: opt.Config.GroupSize, Sym: opt.Config.Sym,
		DescAct: opt.Config.DescAct, StaticGroups: opt.Config.StaticGroups, Damp: opt.Config.DampPercent,
		TrueSequential: opt.Config.TrueSequential, MinExpertTokens: minTok, ExpertFallback: opt.ExpertFallback,
		Calibration: opt.Calibration, GroupNames: GroupNames, Starved: []StarvedExpert{}}}
	if err := r.run(calib); err != nil {
		return nil, err
	}
	r.rep.Seconds = time.Since(start).Seconds()
	r.rep.finish()
	return r.rep, nil
}

type runner struct {
	ctx  context.Context
	ck   *hf.Checkpoint
	m    *model.Model
	opt  Options
	rep  *Report
	w    *hf.Writer
	acts *activations

	mu          sync.Mutex // guards rep.Modules and done
	done, total int
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
	for i := 0; i < c.NumHiddenLayers; i++ {
		for _, l := range c.LayerLinears(i) {
			if quantizable(l) {
				r.total++
			}
		}
	}
	if err := r.writeRaw(hf.EmbedTokens); err != nil {
		return err
	}
	if r.opt.Method == MethodGPTQ {
		if r.acts, err = newActivations(calib, r.opt.ChunkTokens, c.HiddenSize, r.opt.SpillDir); err != nil {
			return err
		}
		defer r.acts.close()
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
	for _, l := range r.m.Layers {
		if err := r.ctx.Err(); err != nil {
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
		if r.opt.Method == MethodGPTQ {
			q, err = r.gptqLayer(l)
		} else {
			q, err = r.rtnLayer(l)
		}
		if err == nil {
			err = r.writeLayer(l, q)
		}
		// Give the layer its original weights back: the quantized ones are
		// written, and the model stays the caller's float model.
		for lin, w := range orig {
			lin.W, lin.Bias = w.w, w.bias
		}
		if err != nil {
			return err
		}
	}
	if err := r.writeRaw(hf.FinalNorm); err != nil {
		return err
	}
	if !c.TieWordEmbeddings {
		if err := r.writeRaw(hf.LMHead + ".weight"); err != nil {
			return err
		}
	}
	if err := r.w.CloseTensors(); err != nil {
		return err
	}
	return r.writeConfigs()
}

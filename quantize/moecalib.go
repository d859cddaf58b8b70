package quantize

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moeforge/moeforge/model"
)

// MoECalib chooses which calibration tokens reach a routed expert's
// Hessian (--moe-calib). The layer's output passed on to the next layer is
// always the model's own routing; only the Hessians change.
type MoECalib struct {
	// Mode is MoECalibRouted (the tokens the router sends, the model's
	// top-k), MoECalibAll (every token of the layer, GPTQModel's
	// ExpertsRoutingBypass) or MoECalibTopK (the TopK experts with the
	// largest router logits per token, GPTQModel's ExpertsRoutingOverride).
	Mode string
	TopK int
}

// MoE calibration modes.
const (
	MoECalibRouted = "routed"
	MoECalibAll    = "all-experts"
	MoECalibTopK   = "top-k"
)

// ParseMoECalib reads routed, all-experts or top-k=N.
func ParseMoECalib(s string) (MoECalib, error) {
	switch {
	case s == "" || s == MoECalibRouted:
		return MoECalib{Mode: MoECalibRouted}, nil
	case s == MoECalibAll:
		return MoECalib{Mode: MoECalibAll}, nil
	case strings.HasPrefix(s, MoECalibTopK+"="):
		n, err := strconv.Atoi(s[len(MoECalibTopK)+1:])
		if err != nil || n < 1 {
			return MoECalib{}, fmt.Errorf("moe-calib %q: top-k=N needs a positive N", s)
		}
		return MoECalib{Mode: MoECalibTopK, TopK: n}, nil
	}
	return MoECalib{}, fmt.Errorf("moe-calib %q: want routed, all-experts or top-k=N", s)
}

// String is the flag form.
func (m MoECalib) String() string {
	switch m.Mode {
	case "", MoECalibRouted:
		return MoECalibRouted
	case MoECalibTopK:
		return fmt.Sprintf("%s=%d", MoECalibTopK, m.TopK)
	}
	return m.Mode
}

// routed reports whether experts take the model's own routed tokens (the
// forward pass's expert inputs) rather than a selection of their own.
func (m MoECalib) routed() bool { return m.Mode == "" || m.Mode == MoECalibRouted }

// selectRows returns, for every expert of moe, the rows of x [rows, hidden]
// (the router's input) it calibrates on: all of them, or those for which
// it is among the TopK largest router logits.
func (m MoECalib) selectRows(moe *model.MoE, x []float32, rows int) [][]int {
	E := len(moe.Experts)
	sel := make([][]int, E)
	if m.Mode == MoECalibAll || m.TopK >= E {
		all := make([]int, rows)
		for i := range all {
			all[i] = i
		}
		for e := range sel {
			sel[e] = all
		}
		return sel
	}
	logits := make([]float32, rows*E)
	moe.Router.Forward(logits, x, rows)
	chosen := make([]bool, E)
	for t := 0; t < rows; t++ {
		row := logits[t*E : (t+1)*E]
		clear(chosen)
		for k := 0; k < m.TopK; k++ {
			best := -1
			for e, v := range row {
				if !chosen[e] && (best < 0 || v > row[best]) {
					best = e
				}
			}
			chosen[best] = true
			sel[best] = append(sel[best], t)
		}
	}
	return sel
}

// gatherRows copies rows idx of x [_, width] into a new [len(idx), width].
func gatherRows(x []float32, width int, idx []int) []float32 {
	out := make([]float32, len(idx)*width)
	for k, i := range idx {
		copy(out[k*width:(k+1)*width], x[i*width:(i+1)*width])
	}
	return out
}

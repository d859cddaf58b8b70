package gptq

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// ConfigFile is the name of the AutoGPTQ quantization config beside config.json.
const ConfigFile = "quantize_config.json"

// Config is the one settings object of a GPTQ checkpoint: what
// quantize_config.json holds (every field AutoGPTQ's BaseQuantizeConfig
// writes, plus lm_head, which vLLM reads), what config.json's
// quantization_config holds (the same settings and
// modules_in_block_to_quantize), and what the quantizer runs with.
type Config struct {
	Bits      int `json:"bits"`
	GroupSize int `json:"group_size"` // -1: one group spanning all inputs
	// DampPercent is λ in H += λ·mean(diag H)·I.
	DampPercent float64 `json:"damp_percent"`
	// DescAct quantizes inputs in order of descending Hessian diagonal
	// (act-order); the weight is not permuted on disk, g_idx records it.
	DescAct bool `json:"desc_act"`
	// StaticGroups computes every group's grid up front from the original
	// weights (natural input groups) instead of at the group's first column.
	StaticGroups bool `json:"static_groups"`
	// Sym selects the symmetric grid (zero point 2^(Bits−1)).
	Sym               bool    `json:"sym"`
	TrueSequential    bool    `json:"true_sequential"`
	LMHead            bool    `json:"lm_head"`
	ModelNameOrPath   *string `json:"model_name_or_path"`
	ModelFileBaseName string  `json:"model_file_base_name"`
	QuantMethod       string  `json:"quant_method"`
	CheckpointFormat  string  `json:"checkpoint_format"`
	// Dynamic holds GPTQModel's per-module overrides (Module resolves them).
	Dynamic Dynamic `json:"dynamic,omitempty"`
	// ModulesInBlock lists the quantized modules of a decoder block in
	// true-sequential groups (config.json only; not in quantize_config.json).
	ModulesInBlock [][]string `json:"modules_in_block_to_quantize,omitempty"`
}

// NewConfig returns the settings of a 4-bit checkpoint in the v1 layout
// whose weights are model.safetensors (or its shards); set Bits,
// CheckpointFormat and Dynamic for others.
func NewConfig(groupSize int, sym, descAct, staticGroups, trueSequential bool, damp float64) Config {
	return Config{
		Bits: Bits, GroupSize: groupSize, DampPercent: damp, DescAct: descAct, StaticGroups: staticGroups,
		Sym: sym, TrueSequential: trueSequential, ModelFileBaseName: "model",
		QuantMethod: "gptq", CheckpointFormat: FormatV1,
	}
}

// quantizationConfig is the key set moeforge writes into config.json's
// quantization_config.
type quantizationConfig struct {
	QuantMethod      string     `json:"quant_method"`
	Bits             int        `json:"bits"`
	GroupSize        int        `json:"group_size"`
	DescAct          bool       `json:"desc_act"`
	Sym              bool       `json:"sym"`
	DampPercent      float64    `json:"damp_percent"`
	TrueSequential   bool       `json:"true_sequential"`
	StaticGroups     bool       `json:"static_groups"`
	CheckpointFormat string     `json:"checkpoint_format"`
	Dynamic          Dynamic    `json:"dynamic,omitempty"`
	LMHead           bool       `json:"lm_head,omitempty"`
	ModulesInBlock   [][]string `json:"modules_in_block_to_quantize,omitempty"`
}

// MarshalQuantizationConfig encodes the keys of config.json's
// quantization_config that moeforge interprets (others read from a file are
// kept by formats/hf).
func (c Config) MarshalQuantizationConfig() ([]byte, error) {
	return json.Marshal(quantizationConfig{
		QuantMethod: c.QuantMethod, Bits: c.Bits, GroupSize: c.GroupSize, DescAct: c.DescAct, Sym: c.Sym,
		DampPercent: c.DampPercent, TrueSequential: c.TrueSequential, StaticGroups: c.StaticGroups,
		CheckpointFormat: c.CheckpointFormat, Dynamic: c.Dynamic, LMHead: c.LMHead, ModulesInBlock: c.ModulesInBlock,
	})
}

// Layout checks what a reader needs (quant_method, bits, checkpoint_format)
// and returns the checkpoint-wide packing (LayoutFor: one module's, after
// Dynamic).
func (c Config) Layout() (Layout, error) {
	if c.QuantMethod != "gptq" {
		return Layout{}, fmt.Errorf("quant_method=%q is not supported (only gptq)", c.QuantMethod)
	}
	for _, r := range c.Dynamic {
		if r.Bits != nil {
			if _, err := LayoutOf(*r.Bits, c.CheckpointFormat); err != nil {
				return Layout{}, fmt.Errorf("dynamic %q: %w", r.Key(), err)
			}
		}
	}
	return LayoutOf(c.Bits, c.CheckpointFormat)
}

// Validate checks every setting a writer needs: the layout, group_size and
// damp_percent. Errors name the option.
func (c Config) Validate() error {
	if _, err := c.Layout(); err != nil {
		return err
	}
	switch {
	case c.GroupSize == 0 || c.GroupSize < -1:
		return fmt.Errorf("group_size=%d: want -1 or a positive size", c.GroupSize)
	case !(c.DampPercent > 0 && c.DampPercent < 1):
		return fmt.Errorf("damp_percent=%g: want a value in (0, 1)", c.DampPercent)
	}
	return c.validateDynamic()
}

// Marshal encodes quantize_config.json (without ModulesInBlock, which only
// config.json holds).
func (c Config) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	c.ModulesInBlock = nil
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteFile writes dir/quantize_config.json.
func (c Config) WriteFile(dir string) error {
	data, err := c.Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ConfigFile), data, 0o644)
}

// ReadConfig reads dir/quantize_config.json.
func ReadConfig(dir string) (Config, error) {
	path := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("%s: %v", path, err)
	}
	return c, nil
}

// WithDefaults fills the zero fields that have a default: Bits (4),
// QuantMethod ("gptq"), CheckpointFormat (FormatV1) and ModelFileBaseName
// ("model").
func (c Config) WithDefaults() Config {
	if c.Bits == 0 {
		c.Bits = Bits
	}
	if c.QuantMethod == "" {
		c.QuantMethod = "gptq"
	}
	if c.CheckpointFormat == "" {
		c.CheckpointFormat = FormatV1
	}
	if c.ModelFileBaseName == "" {
		c.ModelFileBaseName = "model"
	}
	return c
}

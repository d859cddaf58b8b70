package gptq

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moeforge/moeforge/formats/hf"
)

// ConfigFile is the name of the AutoGPTQ quantization config beside config.json.
const ConfigFile = "quantize_config.json"

// Config is the content of quantize_config.json: every field AutoGPTQ's
// BaseQuantizeConfig writes, plus lm_head, which vLLM reads.
type Config struct {
	Bits              int     `json:"bits"`
	GroupSize         int     `json:"group_size"`
	DampPercent       float64 `json:"damp_percent"`
	DescAct           bool    `json:"desc_act"`
	StaticGroups      bool    `json:"static_groups"`
	Sym               bool    `json:"sym"`
	TrueSequential    bool    `json:"true_sequential"`
	LMHead            bool    `json:"lm_head"`
	ModelNameOrPath   *string `json:"model_name_or_path"`
	ModelFileBaseName string  `json:"model_file_base_name"`
	QuantMethod       string  `json:"quant_method"`
	CheckpointFormat  string  `json:"checkpoint_format"`
}

// NewConfig returns the quantize_config.json of a 4-bit checkpoint in the v1
// layout whose weights are model.safetensors (or its shards).
func NewConfig(groupSize int, sym, descAct, staticGroups, trueSequential bool, damp float64) Config {
	return Config{
		Bits: Bits, GroupSize: groupSize, DampPercent: damp, DescAct: descAct, StaticGroups: staticGroups,
		Sym: sym, TrueSequential: trueSequential, ModelFileBaseName: "model",
		QuantMethod: "gptq", CheckpointFormat: "gptq",
	}
}

// Quantization returns the quantization_config for config.json with the same
// settings; modules lists the quantized modules of a decoder block in
// true-sequential groups (names relative to the block), or is nil.
func (c Config) Quantization(modules [][]string) *hf.Quantization {
	return &hf.Quantization{
		QuantMethod: c.QuantMethod, Bits: c.Bits, GroupSize: c.GroupSize, DescAct: c.DescAct, Sym: c.Sym,
		DampPercent: c.DampPercent, TrueSequential: c.TrueSequential, StaticGroups: c.StaticGroups,
		CheckpointFormat: c.CheckpointFormat, ModulesInBlock: modules,
	}
}

// Validate checks the settings a v1 checkpoint reader accepts.
func (c Config) Validate() error {
	switch {
	case c.Bits != Bits:
		return fmt.Errorf("bits=%d: only %d-bit GPTQ is supported", c.Bits, Bits)
	case c.GroupSize == 0 || c.GroupSize < -1:
		return fmt.Errorf("group_size=%d: want -1 or a positive size", c.GroupSize)
	case !(c.DampPercent > 0 && c.DampPercent < 1):
		return fmt.Errorf("damp_percent=%g: want a value in (0, 1)", c.DampPercent)
	case c.QuantMethod != "gptq":
		return fmt.Errorf("quant_method=%q: want gptq", c.QuantMethod)
	case c.CheckpointFormat != "gptq":
		return fmt.Errorf("checkpoint_format=%q: only the v1 layout (gptq) is written", c.CheckpointFormat)
	}
	return nil
}

// WriteFile writes dir/quantize_config.json.
func (c Config) WriteFile(dir string) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ConfigFile), buf.Bytes(), 0o644)
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

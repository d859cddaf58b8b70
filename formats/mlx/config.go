package mlx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// ModeAffine is the only quantization mode moeforge reads and writes.
const ModeAffine = "affine"

// Quantization is config.json's "quantization" object (mlx-lm writes the
// same object as "quantization_config" too): the default group_size and
// bits, the mode, and per-module overrides keyed by module path — an object
// with the module's own group_size and bits, or false for a module kept in
// float. mlx-lm's loader quantizes a module when the override says so, else
// when the weights hold MODULE.scales; Lookup follows the same rule.
type Quantization struct {
	Params
	Mode string
	// Modules holds the overrides; a nil value means false (kept in float).
	Modules map[string]*Params
}

// ParseQuantization decodes a "quantization" object. Errors name the key.
func ParseQuantization(data []byte) (*Quantization, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		return nil, fmt.Errorf("quantization is not a JSON object")
	}
	q := &Quantization{Mode: ModeAffine, Modules: map[string]*Params{}}
	for k, v := range raw {
		var err error
		switch k {
		case "group_size":
			err = json.Unmarshal(v, &q.GroupSize)
		case "bits":
			err = json.Unmarshal(v, &q.Bits)
		case "mode":
			err = json.Unmarshal(v, &q.Mode)
		default:
			if string(v) == "false" {
				q.Modules[k] = nil
				continue
			}
			if string(v) == "true" {
				continue // mlx-lm: quantized with the defaults
			}
			var o struct {
				Params
				Mode string `json:"mode"`
			}
			dec := json.NewDecoder(bytes.NewReader(v))
			if err = dec.Decode(&o); err == nil {
				if o.Mode != "" && o.Mode != ModeAffine {
					err = fmt.Errorf("mode %q is not supported (only affine)", o.Mode)
				} else if err = o.Params.Validate(); err == nil {
					p := o.Params
					q.Modules[k] = &p
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("quantization.%s: %v", k, err)
		}
	}
	if q.Mode != ModeAffine {
		return nil, fmt.Errorf("quantization.mode=%q is not supported (only affine)", q.Mode)
	}
	if err := q.Params.Validate(); err != nil {
		return nil, fmt.Errorf("quantization.%w", err)
	}
	return q, nil
}

// Lookup returns the parameters of module when it is quantized: its
// override, or the defaults when hasScales (the weights hold
// MODULE.scales). ok is false for a module kept in float.
func (q *Quantization) Lookup(module string, hasScales bool) (p Params, ok bool) {
	if q == nil {
		return Params{}, false
	}
	if o, has := q.Modules[module]; has {
		if o == nil {
			return Params{}, false
		}
		return *o, true
	}
	return q.Params, hasScales
}

// MarshalJSON writes the defaults, the mode and the overrides (sorted by
// module path).
func (q *Quantization) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"group_size":%d,"bits":%d,"mode":%q`, q.GroupSize, q.Bits, q.Mode)
	keys := make([]string, 0, len(q.Modules))
	for k := range q.Modules {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name, _ := json.Marshal(k)
		b.WriteString("," + string(name) + ":")
		if p := q.Modules[k]; p == nil {
			b.WriteString("false")
		} else {
			fmt.Fprintf(&b, `{"group_size":%d,"bits":%d}`, p.GroupSize, p.Bits)
		}
	}
	b.WriteString("}")
	return b.Bytes(), nil
}

// Summary is a one-line description ("4-bit affine, group 64, 48 overrides").
func (q *Quantization) Summary() string {
	s := fmt.Sprintf("%d-bit affine, group %d", q.Bits, q.GroupSize)
	if n := len(q.Modules); n > 0 {
		var parts []string
		counts := map[string]int{}
		for _, p := range q.Modules {
			k := "float"
			if p != nil {
				k = fmt.Sprintf("%d-bit g%d", p.Bits, p.GroupSize)
			}
			counts[k]++
		}
		for k, c := range counts {
			parts = append(parts, fmt.Sprintf("%d %s", c, k))
		}
		sort.Strings(parts)
		s += "; overrides: " + strings.Join(parts, ", ")
	}
	return s
}

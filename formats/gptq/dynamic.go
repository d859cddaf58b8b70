package gptq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Rule is one entry of quantization_config.dynamic in GPTQModel's syntax:
// the key "+:REGEX" (or a bare REGEX) overrides settings of the modules
// whose full name (model.layers.3.mlp.experts.7.down_proj) the regular
// expression matches from its start (Python's re.match); "-:REGEX" leaves
// them unquantized. The first rule that matches a module decides, as in
// GPTQModel and vLLM.
type Rule struct {
	Pattern string // the regular expression, without the +: or -: prefix
	Skip    bool   // "-:": the matched modules stay float
	// Overrides; nil keeps the checkpoint-wide setting.
	Bits      *int
	GroupSize *int
	Sym       *bool
	DescAct   *bool

	re *regexp.Regexp
}

// Dynamic is quantization_config.dynamic: rules in the order written (a
// JSON object whose key order matters).
type Dynamic []Rule

// ruleValue is the JSON value of a rule.
type ruleValue struct {
	Bits      *int  `json:"bits,omitempty"`
	GroupSize *int  `json:"group_size,omitempty"`
	Sym       *bool `json:"sym,omitempty"`
	DescAct   *bool `json:"desc_act,omitempty"`
}

// Key is the rule's key as written: "-:REGEX" or "+:REGEX".
func (r Rule) Key() string {
	if r.Skip {
		return "-:" + r.Pattern
	}
	return "+:" + r.Pattern
}

// Match reports whether the rule applies to the module name.
func (r *Rule) Match(name string) bool {
	if r.re == nil {
		re, err := compileRule(r.Pattern)
		if err != nil {
			return false
		}
		r.re = re
	}
	return r.re.MatchString(name)
}

func compileRule(p string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + p + `)`)
}

// ParseDynamic reads GPTQModel's dynamic dict (a JSON object) strictly: keys
// must be valid regular expressions (RE2 syntax: Go's regexp), values
// objects with only bits, group_size, sym and desc_act; "-:" rules take {}.
// Errors name the rule.
func ParseDynamic(data []byte) (Dynamic, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("dynamic: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("dynamic: want a JSON object of \"+:REGEX\"/\"-:REGEX\" → {bits, group_size, sym, desc_act}")
	}
	var rules Dynamic
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("dynamic: %v", err)
		}
		key := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("dynamic %q: %v", key, err)
		}
		r := Rule{Pattern: key}
		switch {
		case strings.HasPrefix(key, "-:"):
			r.Pattern, r.Skip = key[2:], true
		case strings.HasPrefix(key, "+:"):
			r.Pattern = key[2:]
		}
		vd := json.NewDecoder(bytes.NewReader(raw))
		vd.DisallowUnknownFields()
		var v ruleValue
		if err := vd.Decode(&v); err != nil {
			return nil, fmt.Errorf("dynamic %q: %v (a rule may set bits, group_size, sym, desc_act)", key, err)
		}
		if r.Skip && (v != ruleValue{}) {
			return nil, fmt.Errorf("dynamic %q: a -: rule leaves modules unquantized and takes no settings", key)
		}
		r.Bits, r.GroupSize, r.Sym, r.DescAct = v.Bits, v.GroupSize, v.Sym, v.DescAct
		if r.re, err = compileRule(r.Pattern); err != nil {
			return nil, fmt.Errorf("dynamic %q: %v", key, err)
		}
		rules = append(rules, r)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("dynamic: %v", err)
	}
	if dec.More() {
		return nil, errors.New("dynamic: trailing data after the object")
	}
	return rules, nil
}

// UnmarshalJSON reads the object with ParseDynamic.
func (d *Dynamic) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		*d = nil
		return nil
	}
	r, err := ParseDynamic(data)
	if err != nil {
		return err
	}
	*d = r
	return nil
}

// MarshalJSON writes the rules as an object in their order.
func (d Dynamic) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, r := range d {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(r.Key())
		v, err := json.Marshal(ruleValue{Bits: r.Bits, GroupSize: r.GroupSize, Sym: r.Sym, DescAct: r.DescAct})
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Module returns the settings of the module name after the first matching
// dynamic rule, and false when a "-:" rule leaves it unquantized.
func (c Config) Module(name string) (Config, bool) {
	for k := range c.Dynamic {
		r := &c.Dynamic[k]
		if !r.Match(name) {
			continue
		}
		if r.Skip {
			return c, false
		}
		if r.Bits != nil {
			c.Bits = *r.Bits
		}
		if r.GroupSize != nil {
			c.GroupSize = *r.GroupSize
		}
		if r.Sym != nil {
			c.Sym = *r.Sym
		}
		if r.DescAct != nil {
			c.DescAct = *r.DescAct
		}
		break
	}
	return c, true
}

// LayoutFor returns the layout of the module name's tensors (Layout after
// the dynamic rules; a skipped module has the checkpoint-wide layout but no
// GPTQ tensors).
func (c Config) LayoutFor(name string) (Layout, error) {
	m, _ := c.Module(name)
	m.Dynamic = nil
	l, err := m.Layout()
	if err != nil && len(c.Dynamic) > 0 {
		return l, fmt.Errorf("%w (for %s after dynamic)", err, name)
	}
	return l, err
}

// validateDynamic checks every rule's overrides as a writer would.
func (c Config) validateDynamic() error {
	for _, r := range c.Dynamic {
		if _, err := compileRule(r.Pattern); err != nil {
			return fmt.Errorf("dynamic %q: %v", r.Key(), err)
		}
		m := c
		m.Dynamic = nil
		if r.Bits != nil {
			m.Bits = *r.Bits
		}
		if r.GroupSize != nil {
			m.GroupSize = *r.GroupSize
		}
		if err := m.Validate(); err != nil {
			return fmt.Errorf("dynamic %q: %w", r.Key(), err)
		}
	}
	return nil
}

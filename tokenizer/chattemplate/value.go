package chattemplate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Value is a template value: nil (None), Undefined, bool, int64, float64,
// string, []Value (list or tuple), *Dict, or a Callable.
type Value = any

// Undefined is the value of a name or attribute that does not exist.
type Undefined struct{ Name string }

// Callable is a function or macro callable from a template.
type Callable func(args []Value, kw *Dict) (Value, error)

// Dict is a mapping that keeps its keys in insertion order, as Python's
// dict does (tojson and items() depend on it).
type Dict struct {
	keys      []string
	m         map[string]Value
	namespace bool
}

// NewDict returns an empty Dict.
func NewDict() *Dict { return &Dict{m: map[string]Value{}} }

// Set sets key to v, appending key when new.
func (d *Dict) Set(key string, v Value) {
	if _, ok := d.m[key]; !ok {
		d.keys = append(d.keys, key)
	}
	d.m[key] = v
}

// Get returns the value of key.
func (d *Dict) Get(key string) (Value, bool) {
	if d == nil {
		return nil, false
	}
	v, ok := d.m[key]
	return v, ok
}

// Keys returns the keys in insertion order.
func (d *Dict) Keys() []string {
	if d == nil {
		return nil
	}
	return d.keys
}

// Len is the number of keys.
func (d *Dict) Len() int {
	if d == nil {
		return 0
	}
	return len(d.keys)
}

// maxJSONDepth is the deepest nesting of arrays and objects FromJSON
// accepts: encoding/json's limit, so that both accept the same documents
// and a hostile one cannot exhaust the stack.
const maxJSONDepth = 10000

// FromJSON decodes a JSON document into template values, keeping the order
// of object keys. Integers become int64, other numbers float64.
func FromJSON(data []byte) (Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeJSON(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

func decodeJSON(dec *json.Decoder, depth int) (Value, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := t.(type) {
	case json.Delim:
		if depth++; depth > maxJSONDepth {
			return nil, fmt.Errorf("arrays and objects nested more than %d deep", maxJSONDepth)
		}
		switch t {
		case '[':
			list := []Value{}
			for dec.More() {
				v, err := decodeJSON(dec, depth)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token()
			return list, err
		case '{':
			d := NewDict()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeJSON(dec, depth)
				if err != nil {
					return nil, err
				}
				d.Set(k, v)
			}
			_, err := dec.Token()
			return d, err
		}
	case json.Number:
		if i, err := t.Int64(); err == nil && !strings.ContainsAny(t.String(), ".eE") {
			return i, nil
		}
		f, err := t.Float64()
		if errors.Is(err, strconv.ErrRange) {
			return f, nil // ±Inf or 0, as Python's json reads it
		}
		return f, err
	case string, bool, nil:
		return t, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", t)
}

// ToValue converts Go values (maps with string keys, slices, numbers,
// strings, bools, nil, and *Dict) to template values. Map keys are sorted,
// since Go maps have no order; use *Dict or FromJSON to keep an order.
func ToValue(x any) Value {
	switch x := x.(type) {
	case nil, bool, int64, float64, string, *Dict, Callable, Undefined:
		return x
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case float32:
		return float64(x)
	case []Value:
		out := make([]Value, len(x))
		for i, v := range x {
			out[i] = ToValue(v)
		}
		return out
	case []string:
		out := make([]Value, len(x))
		for i, v := range x {
			out[i] = v
		}
		return out
	case []map[string]any:
		out := make([]Value, len(x))
		for i, v := range x {
			out[i] = ToValue(v)
		}
		return out
	case map[string]any:
		d := NewDict()
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d.Set(k, ToValue(x[k]))
		}
		return d
	case map[string]string:
		d := NewDict()
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d.Set(k, x[k])
		}
		return d
	}
	return fmt.Sprint(x)
}

// truthy is Python's bool().
func truthy(v Value) bool {
	switch v := v.(type) {
	case nil, Undefined:
		return false
	case bool:
		return v
	case int64:
		return v != 0
	case float64:
		return v != 0
	case string:
		return v != ""
	case []Value:
		return len(v) > 0
	case *Dict:
		return v.Len() > 0
	}
	return true
}

// str is Python's str() as Jinja prints values (undefined prints nothing).
func str(v Value) string {
	switch v := v.(type) {
	case string:
		return v
	case Undefined:
		return ""
	}
	return repr(v)
}

// repr is Python's repr().
func repr(v Value) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case Undefined:
		return ""
	case bool:
		if v {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return pyFloat(v)
	case string:
		return pyStrRepr(v)
	case []Value:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = repr(x)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case *Dict:
		parts := make([]string, 0, v.Len())
		for _, k := range v.keys {
			parts = append(parts, pyStrRepr(k)+": "+repr(v.m[k]))
		}
		if v.namespace {
			return "<Namespace " + strings.Join(parts, ", ") + ">"
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case Callable:
		return "<function>"
	}
	return fmt.Sprint(v)
}

// pyFloat formats f as Python's float repr: the shortest round-trip digits,
// fixed notation for exponents in [-4, 16), with ".0" on integral values.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, exps, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(exps)
	if exp >= -4 && exp < 16 {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.ContainsAny(s, ".") {
			s += ".0"
		}
		return s
	}
	sign := "+"
	if exp < 0 {
		sign, exp = "-", -exp
	}
	return fmt.Sprintf("%se%s%02d", mant, sign, exp)
}

func pyStrRepr(s string) string {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// toJSON is transformers' tojson filter: json.dumps(v, ensure_ascii=False,
// indent=indent, separators=..., sort_keys=...), Python's formatting.
func toJSON(v Value, indent int, sortKeys bool, itemSep, keySep string, b *strings.Builder, depth int) error {
	nl := func(d int) {
		if indent >= 0 {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(" ", indent*d))
		}
	}
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if v {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case float64:
		switch {
		case math.IsNaN(v):
			b.WriteString("NaN")
		case math.IsInf(v, 1):
			b.WriteString("Infinity")
		case math.IsInf(v, -1):
			b.WriteString("-Infinity")
		default:
			b.WriteString(pyFloat(v))
		}
	case string:
		jsonString(b, v)
	case []Value:
		if len(v) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, x := range v {
			if i > 0 {
				b.WriteString(itemSep)
			}
			nl(depth + 1)
			if err := toJSON(x, indent, sortKeys, itemSep, keySep, b, depth+1); err != nil {
				return err
			}
		}
		nl(depth)
		b.WriteByte(']')
	case *Dict:
		if v.Len() == 0 {
			b.WriteString("{}")
			return nil
		}
		keys := v.keys
		if sortKeys {
			keys = append([]string(nil), keys...)
			sort.Strings(keys)
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(itemSep)
			}
			nl(depth + 1)
			jsonString(b, k)
			b.WriteString(keySep)
			if err := toJSON(v.m[k], indent, sortKeys, itemSep, keySep, b, depth+1); err != nil {
				return err
			}
		}
		nl(depth)
		b.WriteByte('}')
	case Undefined:
		return fmt.Errorf("tojson: %s is undefined", v.Name)
	default:
		return fmt.Errorf("tojson: %s is not JSON serializable", typeName(v))
	}
	return nil
}

func jsonString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

func typeName(v Value) string {
	switch v := v.(type) {
	case nil:
		return "NoneType"
	case Undefined:
		return "undefined"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []Value:
		return "list"
	case *Dict:
		if v.namespace {
			return "Namespace"
		}
		return "dict"
	case Callable:
		return "function"
	}
	return fmt.Sprintf("%T", v)
}

// equal is Python's ==.
func equal(a, b Value) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case Undefined:
		_, ok := b.(Undefined)
		return ok
	case bool:
		bb, ok := b.(bool)
		if ok {
			return a == bb
		}
		if f, ok := number(b); ok {
			return f == boolNum(a)
		}
		return false
	case int64, float64:
		fa, _ := number(a)
		if bb, ok := b.(bool); ok {
			return fa == boolNum(bb)
		}
		fb, ok := number(b)
		return ok && fa == fb
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	case []Value:
		bl, ok := b.([]Value)
		if !ok || len(a) != len(bl) {
			return false
		}
		for i := range a {
			if !equal(a[i], bl[i]) {
				return false
			}
		}
		return true
	case *Dict:
		bd, ok := b.(*Dict)
		if !ok {
			return false
		}
		if a == bd {
			return true
		}
		if a.Len() != bd.Len() {
			return false
		}
		for _, k := range a.keys {
			bv, ok := bd.m[k]
			if !ok || !equal(a.m[k], bv) {
				return false
			}
		}
		return true
	}
	return false
}

func boolNum(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func number(v Value) (float64, bool) {
	switch v := v.(type) {
	case int64:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

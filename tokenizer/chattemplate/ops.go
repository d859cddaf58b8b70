package chattemplate

// Operations on values: slicing, iteration, attribute and item access, operators, comparisons, %-formatting.

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// sliceIndices are the indices Python's seq[lo:hi:step] selects.
func sliceIndices(n, lo int, hasLo bool, hi int, hasHi bool, step int) []int {
	clamp := func(i int, def int, lower, upper int) int {
		if i < 0 {
			i += n
		}
		return max(lower, min(i, upper))
	}
	var out []int
	if step > 0 {
		start, stop := 0, n
		if hasLo {
			start = clamp(lo, 0, 0, n)
		}
		if hasHi {
			stop = clamp(hi, n, 0, n)
		}
		for i := start; i < stop; i += step {
			out = append(out, i)
		}
		return out
	}
	start, stop := n-1, -1
	if hasLo {
		start = clamp(lo, n-1, -1, n-1)
	}
	if hasHi {
		stop = clamp(hi, -1, -1, n-1)
	}
	for i := start; i > stop; i += step {
		out = append(out, i)
	}
	return out
}

// iterate lists the items a for loop visits: list items, dict keys,
// string characters.
func iterate(v Value) ([]Value, error) {
	switch v := v.(type) {
	case []Value:
		return v, nil
	case *Dict:
		out := make([]Value, len(v.keys))
		for i, k := range v.keys {
			out[i] = k
		}
		return out, nil
	case string:
		out := make([]Value, 0, len(v))
		for _, r := range v {
			out = append(out, string(r))
		}
		return out, nil
	case Undefined, nil:
		if u, ok := v.(Undefined); ok {
			_ = u
			return nil, nil
		}
		return nil, errors.New("'NoneType' object is not iterable")
	}
	return nil, fmt.Errorf("'%s' object is not iterable", typeName(v))
}

func getAttr(obj Value, name string, line int) (Value, error) {
	switch o := obj.(type) {
	case Undefined:
		return nil, errAt(line, "%s is undefined (reading .%s)", o.Name, name)
	case *Dict:
		if !o.namespace {
			if m := dictMethod(o, name); m != nil {
				return m, nil
			}
		}
		if v, ok := o.m[name]; ok {
			return v, nil
		}
	case string:
		if m := stringMethod(o, name); m != nil {
			return m, nil
		}
	case []Value:
		if m := listMethod(o, name); m != nil {
			return m, nil
		}
	}
	return Undefined{name}, nil
}

func getItem(obj Value, idx Value, line int) (Value, error) {
	switch o := obj.(type) {
	case Undefined:
		return nil, errAt(line, "%s is undefined (reading [%s])", o.Name, repr(idx))
	case *Dict:
		k, ok := idx.(string)
		if !ok {
			k = str(idx)
		}
		if v, ok := o.m[k]; ok {
			return v, nil
		}
		if ok {
			return getAttr(obj, k, line)
		}
	case []Value:
		i, ok := idx.(int64)
		if !ok {
			if s, isStr := idx.(string); isStr {
				return getAttr(obj, s, line)
			}
			return nil, errAt(line, "list indices must be integers, not %s", typeName(idx))
		}
		if i < 0 {
			i += int64(len(o))
		}
		if i < 0 || i >= int64(len(o)) {
			return Undefined{fmt.Sprintf("[%d]", i)}, nil
		}
		return o[i], nil
	case string:
		i, ok := idx.(int64)
		if !ok {
			if s, isStr := idx.(string); isStr {
				return getAttr(obj, s, line)
			}
			return nil, errAt(line, "string indices must be integers")
		}
		n := int64(utf8.RuneCountInString(o))
		if i < 0 {
			i += n
		}
		if i < 0 || i >= n {
			return Undefined{fmt.Sprintf("[%d]", i)}, nil
		}
		return string([]rune(o)[i]), nil
	}
	return Undefined{str(idx)}, nil
}

func binary(op string, l, r Value) (Value, error) {
	switch op {
	case "==":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	case "in", "not in":
		in, err := contains(r, l)
		if err != nil {
			return nil, err
		}
		return in == (op == "in"), nil
	case "~":
		return str(l) + str(r), nil
	case "<", ">", "<=", ">=":
		c, err := compare(l, r)
		if err != nil {
			return nil, err
		}
		switch op {
		case "<":
			return c < 0, nil
		case ">":
			return c > 0, nil
		case "<=":
			return c <= 0, nil
		}
		return c >= 0, nil
	}
	// arithmetic
	if op == "+" {
		switch a := l.(type) {
		case string:
			if b, ok := r.(string); ok {
				return a + b, nil
			}
		case []Value:
			if b, ok := r.([]Value); ok {
				out := append(append([]Value{}, a...), b...)
				return out, nil
			}
		}
	}
	if op == "*" {
		if s, ok := l.(string); ok {
			if n, ok := r.(int64); ok {
				if n > 0 && int64(len(s))*n > maxOutput {
					return nil, errors.New("string repetition too large")
				}
				return strings.Repeat(s, max(int(n), 0)), nil
			}
		}
	}
	if op == "%" {
		if s, ok := l.(string); ok {
			return pyPercent(s, r)
		}
	}
	li, lInt := asInt(l)
	ri, rInt := asInt(r)
	if lInt && rInt {
		switch op {
		case "+":
			return li + ri, nil
		case "-":
			return li - ri, nil
		case "*":
			return li * ri, nil
		case "//":
			if ri == 0 {
				return nil, errors.New("integer division by zero")
			}
			q := li / ri
			if (li%ri != 0) && ((li < 0) != (ri < 0)) {
				q--
			}
			return q, nil
		case "%":
			if ri == 0 {
				return nil, errors.New("integer modulo by zero")
			}
			m := li % ri
			if m != 0 && ((m < 0) != (ri < 0)) {
				m += ri
			}
			return m, nil
		case "/":
			if ri == 0 {
				return nil, errors.New("division by zero")
			}
			return float64(li) / float64(ri), nil
		case "**":
			if ri >= 0 && ri <= 64 {
				p := int64(1)
				for k := int64(0); k < ri; k++ {
					p *= li
				}
				return p, nil
			}
			return math.Pow(float64(li), float64(ri)), nil
		}
	}
	lf, lNum := asFloat(l)
	rf, rNum := asFloat(r)
	if lNum && rNum {
		switch op {
		case "+":
			return lf + rf, nil
		case "-":
			return lf - rf, nil
		case "*":
			return lf * rf, nil
		case "/":
			if rf == 0 {
				return nil, errors.New("float division by zero")
			}
			return lf / rf, nil
		case "//":
			if rf == 0 {
				return nil, errors.New("float floor division by zero")
			}
			return math.Floor(lf / rf), nil
		case "%":
			if rf == 0 {
				return nil, errors.New("float modulo")
			}
			m := math.Mod(lf, rf)
			if m != 0 && (m < 0) != (rf < 0) {
				m += rf
			}
			return m, nil
		case "**":
			return math.Pow(lf, rf), nil
		}
	}
	return nil, fmt.Errorf("unsupported operand types for %s: %s and %s", op, typeName(l), typeName(r))
}

func asInt(v Value) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func asFloat(v Value) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case int64:
		return float64(v), true
	case bool:
		return boolNum(v), true
	}
	return 0, false
}

func compare(l, r Value) (int, error) {
	if a, ok := l.(string); ok {
		if b, ok := r.(string); ok {
			return strings.Compare(a, b), nil
		}
	}
	a, ok1 := asFloat(l)
	b, ok2 := asFloat(r)
	if ok1 && ok2 {
		switch {
		case a < b:
			return -1, nil
		case a > b:
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("'<' not supported between %s and %s", typeName(l), typeName(r))
}

// contains is Python's "needle in haystack".
func contains(haystack, needle Value) (bool, error) {
	switch h := haystack.(type) {
	case string:
		n, ok := needle.(string)
		if !ok {
			return false, fmt.Errorf("'in <string>' requires string as left operand, not %s", typeName(needle))
		}
		return strings.Contains(h, n), nil
	case []Value:
		for _, x := range h {
			if equal(x, needle) {
				return true, nil
			}
		}
		return false, nil
	case *Dict:
		k, ok := needle.(string)
		if !ok {
			return false, nil
		}
		_, in := h.m[k]
		return in, nil
	case Undefined:
		return false, fmt.Errorf("%s is undefined", h.Name)
	}
	return false, fmt.Errorf("argument of type '%s' is not iterable", typeName(haystack))
}

// pyPercent implements "fmt" % args for %s, %d, %r and %%.
func pyPercent(format string, arg Value) (Value, error) {
	args, ok := arg.([]Value)
	if !ok {
		args = []Value{arg}
	}
	var b strings.Builder
	k := 0
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 >= len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		verb := format[i]
		if verb == '%' {
			b.WriteByte('%')
			continue
		}
		if k >= len(args) {
			return nil, errors.New("not enough arguments for format string")
		}
		a := args[k]
		k++
		switch verb {
		case 's':
			b.WriteString(str(a))
		case 'r':
			b.WriteString(repr(a))
		case 'd', 'i':
			f, ok := asFloat(a)
			if !ok {
				return nil, fmt.Errorf("%%d format: a number is required, not %s", typeName(a))
			}
			fmt.Fprintf(&b, "%d", int64(f))
		default:
			return nil, fmt.Errorf("unsupported format character %q", verb)
		}
	}
	return b.String(), nil
}

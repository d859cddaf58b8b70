package chattemplate

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

func argOr(args []Value, kw *Dict, i int, name string, def Value) Value {
	if i < len(args) {
		return args[i]
	}
	if v, ok := kw.Get(name); ok {
		return v
	}
	return def
}

func applyFilter(name string, v Value, args []Value, kw *Dict) (Value, error) {
	switch name {
	case "trim":
		s, err := wantString(v)
		if err != nil {
			return nil, err
		}
		if c, ok := argOr(args, kw, 0, "chars", nil).(string); ok {
			return strings.Trim(s, c), nil
		}
		return strings.TrimFunc(s, unicode.IsSpace), nil
	case "length", "count":
		return length(v)
	case "list":
		return iterate(v)
	case "string":
		return str(v), nil
	case "lower":
		return strings.ToLower(str(v)), nil
	case "upper":
		return strings.ToUpper(str(v)), nil
	case "capitalize":
		return capitalize(str(v)), nil
	case "title":
		return title(str(v)), nil
	case "safe", "e", "escape", "forceescape":
		if name == "safe" {
			return v, nil
		}
		return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\"", "&#34;", "'", "&#39;").Replace(str(v)), nil
	case "default", "d":
		def := argOr(args, kw, 0, "default_value", "")
		boolean := truthy(argOr(args, kw, 1, "boolean", false))
		if _, u := v.(Undefined); u || boolean && !truthy(v) {
			return def, nil
		}
		return v, nil
	case "tojson":
		indent := -1
		if iv := argOr(args, kw, 0, "indent", nil); iv != nil {
			n, ok := iv.(int64)
			if !ok {
				return nil, errors.New("indent must be an integer")
			}
			indent = int(n)
		}
		itemSep, keySep := ", ", ": "
		if indent >= 0 {
			itemSep = ","
		}
		if sep, ok := argOr(args, kw, 99, "separators", nil).([]Value); ok && len(sep) == 2 {
			itemSep, keySep = str(sep[0]), str(sep[1])
		}
		sortKeys := truthy(argOr(args, kw, 99, "sort_keys", false))
		var b strings.Builder
		if err := toJSON(v, indent, sortKeys, itemSep, keySep, &b, 0); err != nil {
			return nil, err
		}
		return b.String(), nil
	case "join":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		sep := str(argOr(args, kw, 0, "d", ""))
		attr, hasAttr := argOr(args, kw, 1, "attribute", nil).(string)
		parts := make([]string, len(items))
		for i, it := range items {
			if hasAttr {
				it, _ = getAttr(it, attr, 0)
			}
			parts[i] = str(it)
		}
		return strings.Join(parts, sep), nil
	case "first", "last":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return Undefined{name}, nil
		}
		if name == "first" {
			return items[0], nil
		}
		return items[len(items)-1], nil
	case "reverse":
		if s, ok := v.(string); ok {
			r := []rune(s)
			for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
				r[i], r[j] = r[j], r[i]
			}
			return string(r), nil
		}
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		out := make([]Value, len(items))
		for i, it := range items {
			out[len(items)-1-i] = it
		}
		return out, nil
	case "replace":
		s := str(v)
		if len(args) < 2 {
			return nil, errors.New("replace needs old and new")
		}
		n := -1
		if c, ok := argOr(args, kw, 2, "count", nil).(int64); ok {
			n = int(c)
		}
		return strings.Replace(s, str(args[0]), str(args[1]), n), nil
	case "int":
		switch x := v.(type) {
		case int64:
			return x, nil
		case float64:
			return int64(x), nil
		case bool:
			i, _ := asInt(x)
			return i, nil
		case string:
			var i int64
			if _, err := fmt.Sscan(strings.TrimSpace(x), &i); err == nil {
				return i, nil
			}
		}
		return argOr(args, kw, 0, "default", int64(0)), nil
	case "float":
		if f, ok := asFloat(v); ok {
			return f, nil
		}
		if s, ok := v.(string); ok {
			var f float64
			if _, err := fmt.Sscan(strings.TrimSpace(s), &f); err == nil {
				return f, nil
			}
		}
		return argOr(args, kw, 0, "default", 0.0), nil
	case "abs":
		switch x := v.(type) {
		case int64:
			if x < 0 {
				return -x, nil
			}
			return x, nil
		case float64:
			return math.Abs(x), nil
		}
		return nil, fmt.Errorf("bad operand for abs: %s", typeName(v))
	case "round":
		f, ok := asFloat(v)
		if !ok {
			return nil, fmt.Errorf("cannot round a %s", typeName(v))
		}
		prec, _ := argOr(args, kw, 0, "precision", int64(0)).(int64)
		p := math.Pow(10, float64(prec))
		return math.RoundToEven(f*p) / p, nil
	case "items", "dictsort":
		d, ok := v.(*Dict)
		if !ok {
			if _, u := v.(Undefined); u {
				return []Value{}, nil
			}
			return nil, fmt.Errorf("%s of a %s", name, typeName(v))
		}
		keys := d.keys
		if name == "dictsort" {
			keys = append([]string(nil), keys...)
			sort.Strings(keys)
		}
		out := make([]Value, len(keys))
		for i, k := range keys {
			out[i] = []Value{k, d.m[k]}
		}
		return out, nil
	case "unique":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		var out []Value
		for _, it := range items {
			dup := false
			for _, o := range out {
				if equal(o, it) {
					dup = true
					break
				}
			}
			if !dup {
				out = append(out, it)
			}
		}
		return out, nil
	case "sort":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		out := append([]Value(nil), items...)
		rev := truthy(argOr(args, kw, 0, "reverse", false))
		attr, hasAttr := argOr(args, kw, 2, "attribute", nil).(string)
		var sortErr error
		sort.SliceStable(out, func(i, j int) bool {
			a, b := out[i], out[j]
			if hasAttr {
				a, _ = getAttr(a, attr, 0)
				b, _ = getAttr(b, attr, 0)
			}
			c, err := compare(a, b)
			if err != nil {
				sortErr = err
			}
			if rev {
				return c > 0
			}
			return c < 0
		})
		return out, sortErr
	case "map":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		out := make([]Value, 0, len(items))
		if attr, ok := kw.Get("attribute"); ok {
			def, hasDef := kw.Get("default")
			for _, it := range items {
				x, err := getAttr(it, str(attr), 0)
				if err != nil {
					return nil, err
				}
				if _, u := x.(Undefined); u && hasDef {
					x = def
				}
				out = append(out, x)
			}
			return out, nil
		}
		if len(args) == 0 {
			return nil, errors.New("map needs a filter name or attribute=")
		}
		for _, it := range items {
			x, err := applyFilter(str(args[0]), it, args[1:], NewDict())
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	case "select", "reject", "selectattr", "rejectattr":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		byAttr := strings.HasSuffix(name, "attr")
		want := strings.HasPrefix(name, "select")
		rest := args
		var attr string
		if byAttr {
			if len(args) == 0 {
				return nil, fmt.Errorf("%s needs an attribute name", name)
			}
			attr, rest = str(args[0]), args[1:]
		}
		out := []Value{}
		for _, it := range items {
			x := it
			if byAttr {
				if x, err = getAttr(it, attr, 0); err != nil {
					return nil, err
				}
			}
			var ok bool
			if len(rest) == 0 {
				ok = truthy(x)
			} else if ok, err = applyTest(str(rest[0]), x, rest[1:]); err != nil {
				return nil, err
			}
			if ok == want {
				out = append(out, it)
			}
		}
		return out, nil
	case "indent":
		s := str(v)
		width := "    "
		switch w := argOr(args, kw, 0, "width", int64(4)).(type) {
		case int64:
			width = strings.Repeat(" ", int(w))
		case string:
			width = w
		}
		first := truthy(argOr(args, kw, 1, "first", false))
		blank := truthy(argOr(args, kw, 2, "blank", false))
		lines := strings.Split(s, "\n")
		for i := range lines {
			if i == 0 && !first {
				continue
			}
			if lines[i] == "" && !blank {
				continue
			}
			lines[i] = width + lines[i]
		}
		return strings.Join(lines, "\n"), nil
	case "wordcount":
		return int64(len(strings.Fields(str(v)))), nil
	case "sum":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		var total Value = int64(0)
		for _, it := range items {
			if total, err = binary("+", total, it); err != nil {
				return nil, err
			}
		}
		return total, nil
	}
	return nil, fmt.Errorf("unknown filter")
}

func applyTest(name string, v Value, args []Value) (bool, error) {
	_, undef := v.(Undefined)
	switch name {
	case "defined":
		return !undef, nil
	case "undefined":
		return undef, nil
	case "none":
		return v == nil, nil
	case "true":
		b, ok := v.(bool)
		return ok && b, nil
	case "false":
		b, ok := v.(bool)
		return ok && !b, nil
	case "boolean":
		_, ok := v.(bool)
		return ok, nil
	case "string":
		_, ok := v.(string)
		return ok, nil
	case "number":
		_, ok := number(v)
		return ok, nil
	case "integer":
		_, ok := v.(int64)
		return ok, nil
	case "float":
		_, ok := v.(float64)
		return ok, nil
	case "mapping":
		_, ok := v.(*Dict)
		return ok, nil
	case "iterable":
		switch v.(type) {
		case string, []Value, *Dict:
			return true, nil
		}
		return false, nil
	case "sequence":
		switch v.(type) {
		case string, []Value, *Dict:
			return true, nil
		}
		return false, nil
	case "callable":
		_, ok := v.(Callable)
		return ok, nil
	case "odd", "even":
		i, ok := v.(int64)
		if !ok {
			return false, fmt.Errorf("%s of a %s", name, typeName(v))
		}
		return (i%2 != 0) == (name == "odd"), nil
	case "divisibleby":
		i, ok1 := v.(int64)
		if len(args) != 1 {
			return false, errors.New("divisibleby needs one argument")
		}
		d, ok2 := args[0].(int64)
		if !ok1 || !ok2 || d == 0 {
			return false, errors.New("divisibleby needs integers")
		}
		return i%d == 0, nil
	case "equalto", "eq", "==", "sameas":
		if len(args) != 1 {
			return false, fmt.Errorf("%s needs one argument", name)
		}
		return equal(v, args[0]), nil
	case "ne", "!=":
		if len(args) != 1 {
			return false, fmt.Errorf("%s needs one argument", name)
		}
		return !equal(v, args[0]), nil
	case "lower":
		s, ok := v.(string)
		return ok && s == strings.ToLower(s), nil
	case "upper":
		s, ok := v.(string)
		return ok && s == strings.ToUpper(s), nil
	case "in":
		if len(args) != 1 {
			return false, errors.New("in needs one argument")
		}
		return contains(args[0], v)
	case "gt", "ge", "lt", "le", ">", ">=", "<", "<=":
		if len(args) != 1 {
			return false, fmt.Errorf("%s needs one argument", name)
		}
		c, err := compare(v, args[0])
		if err != nil {
			return false, err
		}
		switch name {
		case "gt", ">":
			return c > 0, nil
		case "ge", ">=":
			return c >= 0, nil
		case "lt", "<":
			return c < 0, nil
		}
		return c <= 0, nil
	}
	return false, fmt.Errorf("unknown test")
}

func length(v Value) (Value, error) {
	switch v := v.(type) {
	case string:
		return int64(utf8.RuneCountInString(v)), nil
	case []Value:
		return int64(len(v)), nil
	case *Dict:
		return int64(v.Len()), nil
	case Undefined:
		return int64(0), nil
	}
	return nil, fmt.Errorf("object of type '%s' has no len()", typeName(v))
}

func wantString(v Value) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case Undefined:
		return "", nil
	}
	return str(v), nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + strings.ToLower(s[n:])
}

func title(s string) string {
	var b strings.Builder
	prevLetter := false
	for _, r := range s {
		if unicode.IsLetter(r) {
			if prevLetter {
				b.WriteRune(unicode.ToLower(r))
			} else {
				b.WriteRune(unicode.ToUpper(r))
			}
			prevLetter = true
		} else {
			b.WriteRune(r)
			prevLetter = unicode.IsDigit(r) || r == '\''
		}
	}
	return b.String()
}

func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || r == 0x1c || r == 0x1d || r == 0x1e || r == 0x1f
}

func stripChars(args []Value) (func(rune) bool, error) {
	if len(args) == 0 || args[0] == nil {
		return isPySpace, nil
	}
	chars, ok := args[0].(string)
	if !ok {
		return nil, errors.New("strip arg must be None or str")
	}
	return func(r rune) bool { return strings.ContainsRune(chars, r) }, nil
}

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

func stringMethod(s string, name string) Callable {
	switch name {
	case "strip", "lstrip", "rstrip":
		return func(args []Value, _ *Dict) (Value, error) {
			f, err := stripChars(args)
			if err != nil {
				return nil, err
			}
			switch name {
			case "lstrip":
				return strings.TrimLeftFunc(s, f), nil
			case "rstrip":
				return strings.TrimRightFunc(s, f), nil
			}
			return strings.TrimFunc(s, f), nil
		}
	case "split", "rsplit":
		return func(args []Value, kw *Dict) (Value, error) {
			sep := argOr(args, kw, 0, "sep", nil)
			maxSplit := -1
			if m, ok := argOr(args, kw, 1, "maxsplit", int64(-1)).(int64); ok {
				maxSplit = int(m)
			}
			var parts []string
			if sep == nil {
				if maxSplit < 0 {
					parts = strings.FieldsFunc(s, isPySpace)
				} else {
					parts = splitWhitespaceN(s, maxSplit)
				}
			} else {
				sp, ok := sep.(string)
				if !ok || sp == "" {
					return nil, errors.New("split: empty or non-string separator")
				}
				if name == "rsplit" && maxSplit >= 0 {
					parts = rsplitN(s, sp, maxSplit)
				} else if maxSplit >= 0 {
					parts = strings.SplitN(s, sp, maxSplit+1)
				} else {
					parts = strings.Split(s, sp)
				}
			}
			out := make([]Value, len(parts))
			for i, p := range parts {
				out[i] = p
			}
			return out, nil
		}
	case "startswith", "endswith":
		return func(args []Value, _ *Dict) (Value, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("%s needs an argument", name)
			}
			var cands []Value
			if l, ok := args[0].([]Value); ok {
				cands = l
			} else {
				cands = []Value{args[0]}
			}
			for _, c := range cands {
				p, ok := c.(string)
				if !ok {
					return nil, fmt.Errorf("%s: argument must be a string", name)
				}
				if name == "startswith" && strings.HasPrefix(s, p) || name == "endswith" && strings.HasSuffix(s, p) {
					return true, nil
				}
			}
			return false, nil
		}
	case "upper":
		return func([]Value, *Dict) (Value, error) { return strings.ToUpper(s), nil }
	case "lower":
		return func([]Value, *Dict) (Value, error) { return strings.ToLower(s), nil }
	case "title":
		return func([]Value, *Dict) (Value, error) { return title(s), nil }
	case "capitalize":
		return func([]Value, *Dict) (Value, error) { return capitalize(s), nil }
	case "replace":
		return func(args []Value, _ *Dict) (Value, error) {
			if len(args) < 2 {
				return nil, errors.New("replace needs old and new")
			}
			n := -1
			if len(args) > 2 {
				if c, ok := args[2].(int64); ok {
					n = int(c)
				}
			}
			return strings.Replace(s, str(args[0]), str(args[1]), n), nil
		}
	case "find", "index", "rfind", "count":
		return func(args []Value, _ *Dict) (Value, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("%s needs an argument", name)
			}
			sub := str(args[0])
			var i int
			switch name {
			case "count":
				return int64(strings.Count(s, sub)), nil
			case "rfind":
				i = strings.LastIndex(s, sub)
			default:
				i = strings.Index(s, sub)
			}
			if i >= 0 {
				i = utf8.RuneCountInString(s[:i])
			} else if name == "index" {
				return nil, errors.New("substring not found")
			}
			return int64(i), nil
		}
	case "join":
		return func(args []Value, _ *Dict) (Value, error) {
			if len(args) == 0 {
				return nil, errors.New("join needs an argument")
			}
			items, err := iterate(args[0])
			if err != nil {
				return nil, err
			}
			parts := make([]string, len(items))
			for i, it := range items {
				parts[i] = str(it)
			}
			return strings.Join(parts, s), nil
		}
	case "isdigit", "isspace", "isalpha", "isalnum", "isupper", "islower":
		return func([]Value, *Dict) (Value, error) {
			if s == "" {
				return false, nil
			}
			switch name {
			case "isupper":
				return strings.ToUpper(s) == s && strings.ToLower(s) != s, nil
			case "islower":
				return strings.ToLower(s) == s && strings.ToUpper(s) != s, nil
			}
			for _, r := range s {
				ok := map[string]bool{"isdigit": unicode.IsDigit(r), "isspace": unicode.IsSpace(r),
					"isalpha": unicode.IsLetter(r), "isalnum": unicode.IsLetter(r) || unicode.IsDigit(r)}[name]
				if !ok {
					return false, nil
				}
			}
			return true, nil
		}
	case "format":
		return func(args []Value, kw *Dict) (Value, error) {
			var b strings.Builder
			k := 0
			for i := 0; i < len(s); i++ {
				if s[i] == '{' && i+1 < len(s) && s[i+1] == '{' {
					b.WriteByte('{')
					i++
					continue
				}
				if s[i] == '}' && i+1 < len(s) && s[i+1] == '}' {
					b.WriteByte('}')
					i++
					continue
				}
				if s[i] != '{' {
					b.WriteByte(s[i])
					continue
				}
				j := strings.IndexByte(s[i:], '}')
				if j < 0 {
					return nil, errors.New("format: unmatched '{'")
				}
				field := s[i+1 : i+j]
				i += j
				if field == "" {
					if k >= len(args) {
						return nil, errors.New("format: not enough arguments")
					}
					b.WriteString(str(args[k]))
					k++
				} else if v, ok := kw.Get(field); ok {
					b.WriteString(str(v))
				} else {
					var n int
					if _, err := fmt.Sscan(field, &n); err != nil || n >= len(args) {
						return nil, fmt.Errorf("format: unknown field %q", field)
					}
					b.WriteString(str(args[n]))
				}
			}
			return b.String(), nil
		}
	}
	return nil
}

func splitWhitespaceN(s string, n int) []string {
	var out []string
	s = strings.TrimLeftFunc(s, isPySpace)
	for len(out) < n && s != "" {
		i := strings.IndexFunc(s, isPySpace)
		if i < 0 {
			break
		}
		out = append(out, s[:i])
		s = strings.TrimLeftFunc(s[i:], isPySpace)
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}

func rsplitN(s, sep string, n int) []string {
	var out []string
	for len(out) < n {
		i := strings.LastIndex(s, sep)
		if i < 0 {
			break
		}
		out = append([]string{s[i+len(sep):]}, out...)
		s = s[:i]
	}
	return append([]string{s}, out...)
}

func dictMethod(d *Dict, name string) Callable {
	switch name {
	case "items":
		return func([]Value, *Dict) (Value, error) { return applyFilter("items", d, nil, NewDict()) }
	case "keys":
		return func([]Value, *Dict) (Value, error) { return iterate(d) }
	case "values":
		return func([]Value, *Dict) (Value, error) {
			out := make([]Value, len(d.keys))
			for i, k := range d.keys {
				out[i] = d.m[k]
			}
			return out, nil
		}
	case "get":
		return func(args []Value, _ *Dict) (Value, error) {
			if len(args) == 0 {
				return nil, errors.New("get needs a key")
			}
			if v, ok := d.m[str(args[0])]; ok {
				return v, nil
			}
			if len(args) > 1 {
				return args[1], nil
			}
			return nil, nil
		}
	}
	return nil
}

func listMethod(l []Value, name string) Callable {
	switch name {
	case "index":
		return func(args []Value, _ *Dict) (Value, error) {
			if len(args) == 0 {
				return nil, errors.New("index needs an argument")
			}
			for i, x := range l {
				if equal(x, args[0]) {
					return int64(i), nil
				}
			}
			return nil, fmt.Errorf("%s is not in list", repr(args[0]))
		}
	case "count":
		return func(args []Value, _ *Dict) (Value, error) {
			if len(args) == 0 {
				return nil, errors.New("count needs an argument")
			}
			n := int64(0)
			for _, x := range l {
				if equal(x, args[0]) {
					n++
				}
			}
			return n, nil
		}
	}
	return nil
}

// globals are the functions every template sees.
func globals() map[string]Value {
	return map[string]Value{
		"range": Callable(func(args []Value, _ *Dict) (Value, error) {
			var lo, hi, step int64 = 0, 0, 1
			ints := make([]int64, len(args))
			for i, a := range args {
				n, ok := a.(int64)
				if !ok {
					return nil, errors.New("range: integer arguments expected")
				}
				ints[i] = n
			}
			switch len(ints) {
			case 1:
				hi = ints[0]
			case 2:
				lo, hi = ints[0], ints[1]
			case 3:
				lo, hi, step = ints[0], ints[1], ints[2]
			default:
				return nil, errors.New("range: 1 to 3 arguments expected")
			}
			if step == 0 {
				return nil, errors.New("range: step must not be zero")
			}
			out := []Value{}
			for i := lo; (step > 0 && i < hi) || (step < 0 && i > hi); i += step {
				out = append(out, i)
				if len(out) > 1_000_000 {
					return nil, errors.New("range: too long")
				}
			}
			return out, nil
		}),
		"namespace": Callable(func(args []Value, kw *Dict) (Value, error) {
			ns := NewDict()
			ns.namespace = true
			for _, a := range args {
				if d, ok := a.(*Dict); ok {
					for _, k := range d.keys {
						ns.Set(k, d.m[k])
					}
				}
			}
			for _, k := range kw.Keys() {
				v, _ := kw.Get(k)
				ns.Set(k, v)
			}
			return ns, nil
		}),
		"dict": Callable(func(args []Value, kw *Dict) (Value, error) {
			d := NewDict()
			for _, k := range kw.Keys() {
				v, _ := kw.Get(k)
				d.Set(k, v)
			}
			return d, nil
		}),
		"raise_exception": Callable(func(args []Value, _ *Dict) (Value, error) {
			msg := ""
			if len(args) > 0 {
				msg = str(args[0])
			}
			return nil, &Exception{Message: msg}
		}),
	}
}

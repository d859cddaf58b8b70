package chattemplate

// Python's methods of str, dict and list as templates call them, and the template globals.

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

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

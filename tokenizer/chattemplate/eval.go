package chattemplate

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

type scope struct {
	vars   map[string]Value
	parent *scope
}

func (s *scope) lookup(name string) (Value, bool) {
	for ; s != nil; s = s.parent {
		if v, ok := s.vars[name]; ok {
			return v, true
		}
	}
	return nil, false
}

var (
	errBreak    = errors.New("break outside a loop")
	errContinue = errors.New("continue outside a loop")
)

// Exception is the error raise_exception raises from a template.
type Exception struct{ Message string }

func (e *Exception) Error() string { return "raise_exception: " + e.Message }

type evaluator struct {
	out   *strings.Builder
	steps int // statements executed, bounded against runaway templates
	depth int // macro calls in progress
}

// Bounds against runaway templates.
const (
	maxSteps  = 10_000_000
	maxDepth  = 200      // nested macro calls
	maxOutput = 64 << 20 // bytes of output or of one string
)

func (ev *evaluator) exec(nodes []node, sc *scope) error {
	for _, n := range nodes {
		ev.steps++
		if ev.steps > maxSteps {
			return errors.New("template runs too long")
		}
		if ev.out.Len() > maxOutput {
			return errors.New("template output too large")
		}
		switch n := n.(type) {
		case *textNode:
			ev.out.WriteString(n.s)
		case *outputNode:
			v, err := ev.eval(n.e, sc)
			if err != nil {
				return err
			}
			ev.out.WriteString(str(v))
		case *ifNode:
			done := false
			for i, c := range n.conds {
				v, err := ev.eval(c, sc)
				if err != nil {
					return err
				}
				if truthy(v) {
					if err := ev.exec(n.bodies[i], sc); err != nil {
						return err
					}
					done = true
					break
				}
			}
			if !done && len(n.bodies) > len(n.conds) {
				if err := ev.exec(n.bodies[len(n.conds)], sc); err != nil {
					return err
				}
			}
		case *forNode:
			if err := ev.execFor(n, sc); err != nil {
				return err
			}
		case *setNode:
			if err := ev.execSet(n, sc); err != nil {
				return err
			}
		case *macroNode:
			sc.vars[n.name] = ev.macro(n, sc)
		case *breakNode:
			return errBreak
		case *continueNode:
			return errContinue
		}
	}
	return nil
}

func (ev *evaluator) execSet(n *setNode, sc *scope) error {
	var v Value
	if n.value != nil {
		var err error
		if v, err = ev.eval(n.value, sc); err != nil {
			return err
		}
	} else {
		saved := ev.out
		var b strings.Builder
		ev.out = &b
		err := ev.exec(n.body, sc)
		ev.out = saved
		if err != nil {
			return err
		}
		v = b.String()
	}
	vals := []Value{v}
	if len(n.targets) > 1 {
		list, err := iterate(v)
		if err != nil {
			return err
		}
		if len(list) != len(n.targets) {
			return fmt.Errorf("set: %d values to unpack into %d names", len(list), len(n.targets))
		}
		vals = list
	}
	for i, t := range n.targets {
		switch t := t.(type) {
		case *nameExpr:
			sc.vars[t.name] = vals[i]
		case *attrExpr:
			obj, err := ev.eval(t.obj, sc)
			if err != nil {
				return err
			}
			d, ok := obj.(*Dict)
			if !ok || !d.namespace {
				return errAt(t.line, "cannot assign attribute %s of a %s (only namespace objects)", t.name, typeName(obj))
			}
			d.Set(t.name, vals[i])
		}
	}
	return nil
}

func (ev *evaluator) execFor(n *forNode, sc *scope) error {
	it, err := ev.eval(n.iter, sc)
	if err != nil {
		return err
	}
	items, err := iterate(it)
	if err != nil {
		return errAt(n.line, "for: %v", err)
	}
	bind := func(s *scope, item Value) error {
		if len(n.vars) == 1 {
			s.vars[n.vars[0]] = item
			return nil
		}
		parts, err := iterate(item)
		if err != nil || len(parts) != len(n.vars) {
			return errAt(n.line, "for: cannot unpack %s into %d names", typeName(item), len(n.vars))
		}
		for i, name := range n.vars {
			s.vars[name] = parts[i]
		}
		return nil
	}
	if n.filter != nil {
		var kept []Value
		for _, item := range items {
			s := &scope{vars: map[string]Value{}, parent: sc}
			if err := bind(s, item); err != nil {
				return err
			}
			v, err := ev.eval(n.filter, s)
			if err != nil {
				return err
			}
			if truthy(v) {
				kept = append(kept, item)
			}
		}
		items = kept
	}
	if len(items) == 0 {
		return ev.exec(n.elseBody, &scope{vars: map[string]Value{}, parent: sc})
	}
	L := int64(len(items))
	for i, item := range items {
		s := &scope{vars: map[string]Value{}, parent: sc}
		if err := bind(s, item); err != nil {
			return err
		}
		loop := NewDict()
		idx := int64(i)
		loop.Set("index", idx+1)
		loop.Set("index0", idx)
		loop.Set("revindex", L-idx)
		loop.Set("revindex0", L-idx-1)
		loop.Set("first", i == 0)
		loop.Set("last", i == len(items)-1)
		loop.Set("length", L)
		loop.Set("depth", int64(1))
		loop.Set("depth0", int64(0))
		if i > 0 {
			loop.Set("previtem", items[i-1])
		} else {
			loop.Set("previtem", Undefined{"loop.previtem"})
		}
		if i+1 < len(items) {
			loop.Set("nextitem", items[i+1])
		} else {
			loop.Set("nextitem", Undefined{"loop.nextitem"})
		}
		loop.Set("cycle", Callable(func(args []Value, _ *Dict) (Value, error) {
			if len(args) == 0 {
				return nil, errors.New("loop.cycle: no items")
			}
			return args[i%len(args)], nil
		}))
		s.vars["loop"] = loop
		err := ev.exec(n.body, s)
		if err == errBreak {
			break
		}
		if err != nil && err != errContinue {
			return err
		}
	}
	return nil
}

func (ev *evaluator) macro(n *macroNode, defScope *scope) Callable {
	return func(args []Value, kw *Dict) (Value, error) {
		if ev.depth >= maxDepth {
			return nil, fmt.Errorf("macro %s: calls nested too deep", n.name)
		}
		ev.depth++
		defer func() { ev.depth-- }()
		s := &scope{vars: map[string]Value{}, parent: defScope}
		for i, p := range n.params {
			switch {
			case i < len(args):
				s.vars[p] = args[i]
			default:
				if v, ok := kw.Get(p); ok {
					s.vars[p] = v
				} else if n.defaults[i] != nil {
					v, err := ev.eval(n.defaults[i], s)
					if err != nil {
						return nil, err
					}
					s.vars[p] = v
				} else {
					s.vars[p] = Undefined{p}
				}
			}
		}
		saved := ev.out
		var b strings.Builder
		ev.out = &b
		err := ev.exec(n.body, s)
		ev.out = saved
		if err != nil {
			return nil, err
		}
		return b.String(), nil
	}
}

func (ev *evaluator) eval(e expr, sc *scope) (Value, error) {
	switch e := e.(type) {
	case *literal:
		return e.v, nil
	case *nameExpr:
		if v, ok := sc.lookup(e.name); ok {
			return v, nil
		}
		return Undefined{e.name}, nil
	case *listExpr:
		out := make([]Value, 0, len(e.items))
		for _, it := range e.items {
			v, err := ev.eval(it, sc)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case *tupleExpr:
		out := make([]Value, 0, len(e.items))
		for _, it := range e.items {
			v, err := ev.eval(it, sc)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case *dictExpr:
		d := NewDict()
		for i := range e.keys {
			k, err := ev.eval(e.keys[i], sc)
			if err != nil {
				return nil, err
			}
			v, err := ev.eval(e.vals[i], sc)
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				ks = str(k)
			}
			d.Set(ks, v)
		}
		return d, nil
	case *attrExpr:
		obj, err := ev.eval(e.obj, sc)
		if err != nil {
			return nil, err
		}
		return getAttr(obj, e.name, e.line)
	case *indexExpr:
		obj, err := ev.eval(e.obj, sc)
		if err != nil {
			return nil, err
		}
		idx, err := ev.eval(e.idx, sc)
		if err != nil {
			return nil, err
		}
		return getItem(obj, idx, e.line)
	case *sliceExpr:
		return ev.evalSlice(e, sc)
	case *callExpr:
		fn, err := ev.eval(e.fn, sc)
		if err != nil {
			return nil, err
		}
		c, ok := fn.(Callable)
		if !ok {
			if u, isU := fn.(Undefined); isU {
				return nil, errAt(e.line, "%s is undefined, cannot call it", u.Name)
			}
			return nil, errAt(e.line, "a %s is not callable", typeName(fn))
		}
		args, kw, err := ev.evalArgs(e.args, e.kwName, e.kwArgs, sc)
		if err != nil {
			return nil, err
		}
		v, err := c(args, kw)
		if err != nil {
			var ex *Exception
			if errors.As(err, &ex) || strings.HasPrefix(err.Error(), "line ") {
				return nil, err
			}
			return nil, errAt(e.line, "%v", err)
		}
		return v, nil
	case *filterExpr:
		obj, err := ev.eval(e.obj, sc)
		if err != nil {
			return nil, err
		}
		args, kw, err := ev.evalArgs(e.args, e.kwName, e.kwArgs, sc)
		if err != nil {
			return nil, err
		}
		v, err := applyFilter(e.name, obj, args, kw)
		if err != nil {
			return nil, errAt(e.line, "filter %s: %v", e.name, err)
		}
		return v, nil
	case *testExpr:
		obj, err := ev.eval(e.obj, sc)
		if err != nil {
			return nil, err
		}
		args, _, err := ev.evalArgs(e.args, nil, nil, sc)
		if err != nil {
			return nil, err
		}
		r, err := applyTest(e.name, obj, args)
		if err != nil {
			return nil, errAt(e.line, "test %s: %v", e.name, err)
		}
		return r != e.neg, nil
	case *unaryExpr:
		v, err := ev.eval(e.e, sc)
		if err != nil {
			return nil, err
		}
		switch e.op {
		case "not":
			return !truthy(v), nil
		case "-":
			switch x := v.(type) {
			case int64:
				return -x, nil
			case float64:
				return -x, nil
			}
			return nil, fmt.Errorf("bad operand type for unary -: %s", typeName(v))
		default:
			return v, nil
		}
	case *condExpr:
		c, err := ev.eval(e.cond, sc)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return ev.eval(e.a, sc)
		}
		if e.b == nil {
			return Undefined{"else branch"}, nil
		}
		return ev.eval(e.b, sc)
	case *binaryExpr:
		l, err := ev.eval(e.l, sc)
		if err != nil {
			return nil, err
		}
		switch e.op {
		case "and":
			if !truthy(l) {
				return l, nil
			}
			return ev.eval(e.r, sc)
		case "or":
			if truthy(l) {
				return l, nil
			}
			return ev.eval(e.r, sc)
		}
		r, err := ev.eval(e.r, sc)
		if err != nil {
			return nil, err
		}
		v, err := binary(e.op, l, r)
		if err != nil {
			return nil, errAt(e.line, "%v", err)
		}
		return v, nil
	}
	return nil, fmt.Errorf("internal: unknown expression %T", e)
}

func (ev *evaluator) evalArgs(args []expr, kwName []string, kwArgs []expr, sc *scope) ([]Value, *Dict, error) {
	var vals []Value
	for _, a := range args {
		v, err := ev.eval(a, sc)
		if err != nil {
			return nil, nil, err
		}
		vals = append(vals, v)
	}
	kw := NewDict()
	for i, name := range kwName {
		v, err := ev.eval(kwArgs[i], sc)
		if err != nil {
			return nil, nil, err
		}
		kw.Set(name, v)
	}
	return vals, kw, nil
}

func (ev *evaluator) evalSlice(e *sliceExpr, sc *scope) (Value, error) {
	obj, err := ev.eval(e.obj, sc)
	if err != nil {
		return nil, err
	}
	bound := func(x expr) (int, bool, error) {
		if x == nil {
			return 0, false, nil
		}
		v, err := ev.eval(x, sc)
		if err != nil {
			return 0, false, err
		}
		if v == nil {
			return 0, false, nil
		}
		i, ok := v.(int64)
		if !ok {
			return 0, false, fmt.Errorf("slice indices must be integers, not %s", typeName(v))
		}
		return int(i), true, nil
	}
	lo, hasLo, err := bound(e.lo)
	if err != nil {
		return nil, err
	}
	hi, hasHi, err := bound(e.hi)
	if err != nil {
		return nil, err
	}
	step, hasStep, err := bound(e.step)
	if err != nil {
		return nil, err
	}
	if !hasStep {
		step = 1
	}
	if step == 0 {
		return nil, errors.New("slice step cannot be zero")
	}
	var n int
	var runes []rune
	switch o := obj.(type) {
	case []Value:
		n = len(o)
	case string:
		runes = []rune(o)
		n = len(runes)
	default:
		return nil, fmt.Errorf("cannot slice a %s", typeName(obj))
	}
	idx := sliceIndices(n, lo, hasLo, hi, hasHi, step)
	switch o := obj.(type) {
	case []Value:
		out := make([]Value, 0, len(idx))
		for _, i := range idx {
			out = append(out, o[i])
		}
		return out, nil
	default:
		var b strings.Builder
		for _, i := range idx {
			b.WriteRune(runes[i])
		}
		return b.String(), nil
	}
}

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

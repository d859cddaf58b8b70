package chattemplate

import (
	"errors"
	"fmt"
	"strings"
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

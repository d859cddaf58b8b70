package chattemplate

import (
	"fmt"
)

// Statement nodes.
type node interface{}

type (
	textNode   struct{ s string }
	outputNode struct{ e expr }
	ifNode     struct {
		conds  []expr
		bodies [][]node // len(bodies) == len(conds) or len(conds)+1 (else)
	}
	forNode struct {
		vars     []string
		iter     expr
		filter   expr // nil: none
		body     []node
		elseBody []node
		line     int
	}
	setNode struct {
		targets []expr // nameExpr or attrExpr (namespace attribute)
		value   expr   // nil: block set
		body    []node
	}
	macroNode struct {
		name     string
		params   []string
		defaults []expr // nil where none
		body     []node
	}
	callBlockNode struct { // {% call %} is not supported; kept for a clear error
	}
	breakNode    struct{}
	continueNode struct{}
)

// Expression nodes.
type expr interface{}

type (
	literal  struct{ v Value }
	nameExpr struct {
		name string
		line int
	}
	listExpr  struct{ items []expr }
	tupleExpr struct{ items []expr }
	dictExpr  struct{ keys, vals []expr }
	attrExpr  struct {
		obj  expr
		name string
		line int
	}
	indexExpr struct {
		obj, idx expr
		line     int
	}
	sliceExpr struct {
		obj, lo, hi, step expr // nil where omitted
	}
	callExpr struct {
		fn     expr
		args   []expr
		kwName []string
		kwArgs []expr
		line   int
	}
	filterExpr struct {
		obj    expr
		name   string
		args   []expr
		kwName []string
		kwArgs []expr
		line   int
	}
	testExpr struct {
		obj  expr
		name string
		args []expr
		neg  bool
		line int
	}
	unaryExpr struct {
		op string
		e  expr
	}
	binaryExpr struct {
		op   string
		l, r expr
		line int
	}
	condExpr struct{ cond, a, b expr }
)

type parser struct {
	segs []segment
	pos  int // index into segs
	// within the current tag
	toks []token
	tp   int
	line int
}

// parseTemplate turns the segments into a statement tree.
func parseTemplate(segs []segment) ([]node, error) {
	p := &parser{segs: segs}
	body, end, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	if end != "" {
		return nil, fmt.Errorf("line %d: unexpected {%% %s %%}", p.line, end)
	}
	return body, nil
}

func errAt(line int, format string, args ...any) error {
	return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
}

// parseBody parses nodes until a block tag whose keyword is one of the
// closers of the caller (any unknown end*/else/elif), which it returns with
// p positioned on that tag's tokens.
func (p *parser) parseBody() ([]node, string, error) {
	var body []node
	for p.pos < len(p.segs) {
		s := &p.segs[p.pos]
		p.pos++
		switch s.kind {
		case segText:
			if s.text != "" {
				body = append(body, &textNode{s.text})
			}
		case segComment:
		case segVar:
			p.toks, p.tp, p.line = s.tokens, 0, s.line
			e, err := p.parseExpr()
			if err != nil {
				return nil, "", err
			}
			if err := p.expectEOF(); err != nil {
				return nil, "", err
			}
			body = append(body, &outputNode{e})
		case segBlock:
			p.toks, p.tp, p.line = s.tokens, 0, s.line
			kw := p.next()
			if kw.kind != tkName {
				return nil, "", errAt(s.line, "expected a statement keyword")
			}
			switch kw.s {
			case "if":
				n, err := p.parseIf()
				if err != nil {
					return nil, "", err
				}
				body = append(body, n)
			case "for":
				n, err := p.parseFor()
				if err != nil {
					return nil, "", err
				}
				body = append(body, n)
			case "set":
				n, err := p.parseSet()
				if err != nil {
					return nil, "", err
				}
				body = append(body, n)
			case "macro":
				n, err := p.parseMacro()
				if err != nil {
					return nil, "", err
				}
				body = append(body, n)
			case "break":
				body = append(body, &breakNode{})
			case "continue":
				body = append(body, &continueNode{})
			case "raw", "endraw", "generation", "endgeneration":
				// raw's text was split off verbatim; generation only marks
				// assistant spans for masks.
			case "elif", "else", "endif", "endfor", "endset", "endmacro":
				return body, kw.s, nil
			default:
				return nil, "", errAt(s.line, "unsupported statement %q", kw.s)
			}
		}
	}
	return body, "", nil
}

func (p *parser) parseIf() (node, error) {
	n := &ifNode{}
	line := p.line
	for {
		cond, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if err := p.expectEOF(); err != nil {
			return nil, err
		}
		body, end, err := p.parseBody()
		if err != nil {
			return nil, err
		}
		n.conds = append(n.conds, cond)
		n.bodies = append(n.bodies, body)
		switch end {
		case "elif":
			continue
		case "else":
			if err := p.expectEOF(); err != nil {
				return nil, err
			}
			body, end, err := p.parseBody()
			if err != nil {
				return nil, err
			}
			if end != "endif" {
				return nil, errAt(line, "if without endif")
			}
			n.bodies = append(n.bodies, body)
			return n, p.expectEOF()
		case "endif":
			return n, p.expectEOF()
		default:
			return nil, errAt(line, "if without endif")
		}
	}
}

func (p *parser) parseFor() (node, error) {
	n := &forNode{line: p.line}
	for {
		t := p.next()
		if t.kind != tkName {
			return nil, errAt(p.line, "for: expected a loop variable")
		}
		n.vars = append(n.vars, t.s)
		if !p.acceptOp(",") {
			break
		}
	}
	if t := p.next(); t.kind != tkName || t.s != "in" {
		return nil, errAt(p.line, "for: expected 'in'")
	}
	iter, err := p.parseOr() // not a conditional expression: "if" filters the loop
	if err != nil {
		return nil, err
	}
	n.iter = iter
	if p.acceptName("if") {
		if n.filter, err = p.parseExpr(); err != nil {
			return nil, err
		}
	}
	p.acceptName("recursive")
	if err := p.expectEOF(); err != nil {
		return nil, err
	}
	body, end, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	n.body = body
	if end == "else" {
		if err := p.expectEOF(); err != nil {
			return nil, err
		}
		if n.elseBody, end, err = p.parseBody(); err != nil {
			return nil, err
		}
	}
	if end != "endfor" {
		return nil, errAt(n.line, "for without endfor")
	}
	return n, p.expectEOF()
}

func (p *parser) parseSet() (node, error) {
	n := &setNode{}
	line := p.line
	for {
		t := p.next()
		if t.kind != tkName {
			return nil, errAt(line, "set: expected a name")
		}
		var target expr = &nameExpr{name: t.s, line: t.line}
		if p.acceptOp(".") {
			a := p.next()
			if a.kind != tkName {
				return nil, errAt(line, "set: expected an attribute name")
			}
			target = &attrExpr{obj: target, name: a.s, line: a.line}
		}
		n.targets = append(n.targets, target)
		if !p.acceptOp(",") {
			break
		}
	}
	if p.acceptOp("=") {
		v, err := p.parseTuple()
		if err != nil {
			return nil, err
		}
		n.value = v
		return n, p.expectEOF()
	}
	if err := p.expectEOF(); err != nil {
		return nil, err
	}
	body, end, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	if end != "endset" {
		return nil, errAt(line, "set block without endset")
	}
	n.body = body
	return n, p.expectEOF()
}

func (p *parser) parseMacro() (node, error) {
	line := p.line
	t := p.next()
	if t.kind != tkName {
		return nil, errAt(line, "macro: expected a name")
	}
	n := &macroNode{name: t.s}
	if err := p.expectOp("("); err != nil {
		return nil, err
	}
	for !p.acceptOp(")") {
		a := p.next()
		if a.kind != tkName {
			return nil, errAt(line, "macro %s: expected a parameter name", n.name)
		}
		n.params = append(n.params, a.s)
		var def expr
		if p.acceptOp("=") {
			var err error
			if def, err = p.parseExpr(); err != nil {
				return nil, err
			}
		}
		n.defaults = append(n.defaults, def)
		if !p.acceptOp(",") {
			if err := p.expectOp(")"); err != nil {
				return nil, err
			}
			break
		}
	}
	if err := p.expectEOF(); err != nil {
		return nil, err
	}
	body, end, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	if end != "endmacro" {
		return nil, errAt(line, "macro %s without endmacro", n.name)
	}
	n.body = body
	return n, p.expectEOF()
}

// Token helpers.

func (p *parser) peek() token { return p.toks[p.tp] }

func (p *parser) next() token {
	t := p.toks[p.tp]
	if t.kind != tkEOF {
		p.tp++
	}
	return t
}

func (p *parser) acceptOp(op string) bool {
	if t := p.peek(); t.kind == tkOp && t.s == op {
		p.tp++
		return true
	}
	return false
}

func (p *parser) acceptName(name string) bool {
	if t := p.peek(); t.kind == tkName && t.s == name {
		p.tp++
		return true
	}
	return false
}

func (p *parser) expectOp(op string) error {
	if !p.acceptOp(op) {
		return errAt(p.peek().line, "expected %q, found %s", op, describe(p.peek()))
	}
	return nil
}

func (p *parser) expectEOF() error {
	if t := p.peek(); t.kind != tkEOF {
		return errAt(t.line, "unexpected %s", describe(t))
	}
	return nil
}

func describe(t token) string {
	switch t.kind {
	case tkEOF:
		return "end of tag"
	case tkString:
		return fmt.Sprintf("string %q", t.s)
	case tkInt, tkFloat:
		return "number " + t.s
	}
	return fmt.Sprintf("%q", t.s)
}

// Expressions, lowest precedence first (as Jinja2's parser).

// parseTuple parses "a, b" (a tuple) or a single expression.
func (p *parser) parseTuple() (expr, error) {
	e, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); !(t.kind == tkOp && t.s == ",") {
		return e, nil
	}
	items := []expr{e}
	for p.acceptOp(",") {
		if t := p.peek(); t.kind == tkEOF {
			break
		}
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		items = append(items, e)
	}
	return &tupleExpr{items}, nil
}

func (p *parser) parseExpr() (expr, error) {
	a, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.acceptName("if") {
		cond, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		var b expr
		if p.acceptName("else") {
			if b, err = p.parseExpr(); err != nil {
				return nil, err
			}
		}
		return &condExpr{cond, a, b}, nil
	}
	return a, nil
}

func (p *parser) parseOr() (expr, error) {
	l, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for p.acceptName("or") {
		r, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		l = &binaryExpr{op: "or", l: l, r: r}
	}
	return l, nil
}

func (p *parser) parseAnd() (expr, error) {
	l, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	for p.acceptName("and") {
		r, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		l = &binaryExpr{op: "and", l: l, r: r}
	}
	return l, nil
}

func (p *parser) parseNot() (expr, error) {
	if p.acceptName("not") {
		e, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return &unaryExpr{op: "not", e: e}, nil
	}
	return p.parseCompare()
}

func (p *parser) parseCompare() (expr, error) {
	l, err := p.parseMath1()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		var op string
		switch {
		case t.kind == tkOp && (t.s == "==" || t.s == "!=" || t.s == "<" || t.s == ">" || t.s == "<=" || t.s == ">="):
			op = t.s
			p.tp++
		case t.kind == tkName && t.s == "in":
			op = "in"
			p.tp++
		case t.kind == tkName && t.s == "not" && p.toks[p.tp+1].kind == tkName && p.toks[p.tp+1].s == "in":
			op = "not in"
			p.tp += 2
		default:
			return l, nil
		}
		r, err := p.parseMath1()
		if err != nil {
			return nil, err
		}
		l = &binaryExpr{op: op, l: l, r: r, line: t.line}
	}
}

func (p *parser) parseMath1() (expr, error) {
	l, err := p.parseConcat()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tkOp || (t.s != "+" && t.s != "-") {
			return l, nil
		}
		p.tp++
		r, err := p.parseConcat()
		if err != nil {
			return nil, err
		}
		l = &binaryExpr{op: t.s, l: l, r: r, line: t.line}
	}
}

func (p *parser) parseConcat() (expr, error) {
	l, err := p.parseMath2()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tkOp || t.s != "~" {
			return l, nil
		}
		p.tp++
		r, err := p.parseMath2()
		if err != nil {
			return nil, err
		}
		l = &binaryExpr{op: "~", l: l, r: r, line: t.line}
	}
}

func (p *parser) parseMath2() (expr, error) {
	l, err := p.parsePow()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tkOp || (t.s != "*" && t.s != "/" && t.s != "//" && t.s != "%") {
			return l, nil
		}
		p.tp++
		r, err := p.parsePow()
		if err != nil {
			return nil, err
		}
		l = &binaryExpr{op: t.s, l: l, r: r, line: t.line}
	}
}

func (p *parser) parsePow() (expr, error) {
	l, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tkOp || t.s != "**" {
			return l, nil
		}
		p.tp++
		r, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		l = &binaryExpr{op: "**", l: l, r: r, line: t.line}
	}
}

// parseUnary parses [-+]operand and its filters and tests, which apply to
// the negated value as in Jinja2: -x|abs is (-x)|abs.
func (p *parser) parseUnary() (expr, error) {
	e, err := p.parseSigned()
	if err != nil {
		return nil, err
	}
	return p.parseFilters(e)
}

func (p *parser) parseSigned() (expr, error) {
	t := p.peek()
	if t.kind == tkOp && (t.s == "-" || t.s == "+") {
		p.tp++
		e, err := p.parseSigned()
		if err != nil {
			return nil, err
		}
		return &unaryExpr{op: t.s, e: e}, nil
	}
	e, err := p.parsePrimary()
	if err != nil {
		return nil, err
	}
	return p.parsePostfix(e)
}

func (p *parser) parsePrimary() (expr, error) {
	t := p.next()
	switch t.kind {
	case tkString:
		s := t.s
		for p.peek().kind == tkString { // adjacent literals concatenate
			s += p.next().s
		}
		return &literal{s}, nil
	case tkInt:
		return &literal{t.i}, nil
	case tkFloat:
		return &literal{t.f}, nil
	case tkName:
		switch t.s {
		case "true", "True":
			return &literal{true}, nil
		case "false", "False":
			return &literal{false}, nil
		case "none", "None":
			return &literal{nil}, nil
		}
		return &nameExpr{name: t.s, line: t.line}, nil
	case tkOp:
		switch t.s {
		case "(":
			if p.acceptOp(")") {
				return &tupleExpr{}, nil
			}
			e, err := p.parseTuple()
			if err != nil {
				return nil, err
			}
			return e, p.expectOp(")")
		case "[":
			l := &listExpr{}
			for !p.acceptOp("]") {
				e, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				l.items = append(l.items, e)
				if !p.acceptOp(",") {
					if err := p.expectOp("]"); err != nil {
						return nil, err
					}
					break
				}
			}
			return l, nil
		case "{":
			d := &dictExpr{}
			for !p.acceptOp("}") {
				k, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				if err := p.expectOp(":"); err != nil {
					return nil, err
				}
				v, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				d.keys, d.vals = append(d.keys, k), append(d.vals, v)
				if !p.acceptOp(",") {
					if err := p.expectOp("}"); err != nil {
						return nil, err
					}
					break
				}
			}
			return d, nil
		}
	}
	return nil, errAt(t.line, "unexpected %s", describe(t))
}

func (p *parser) parsePostfix(e expr) (expr, error) {
	for {
		t := p.peek()
		if t.kind != tkOp {
			return e, nil
		}
		switch t.s {
		case ".":
			p.tp++
			a := p.next()
			switch a.kind {
			case tkName:
				e = &attrExpr{obj: e, name: a.s, line: a.line}
			case tkInt:
				e = &indexExpr{obj: e, idx: &literal{a.i}, line: a.line}
			default:
				return nil, errAt(a.line, "expected an attribute name after '.'")
			}
		case "[":
			p.tp++
			var parts [3]expr
			n := 0
			isSlice := false
			for {
				if t := p.peek(); !(t.kind == tkOp && (t.s == ":" || t.s == "]")) {
					e, err := p.parseExpr()
					if err != nil {
						return nil, err
					}
					parts[n] = e
				}
				if p.acceptOp(":") {
					isSlice = true
					n++
					if n > 2 {
						return nil, errAt(t.line, "too many ':' in a slice")
					}
					continue
				}
				if err := p.expectOp("]"); err != nil {
					return nil, err
				}
				break
			}
			if isSlice {
				e = &sliceExpr{obj: e, lo: parts[0], hi: parts[1], step: parts[2]}
			} else {
				e = &indexExpr{obj: e, idx: parts[0], line: t.line}
			}
		case "(":
			p.tp++
			c := &callExpr{fn: e, line: t.line}
			if err := p.parseArgs(&c.args, &c.kwName, &c.kwArgs); err != nil {
				return nil, err
			}
			e = c
		default:
			return e, nil
		}
	}
}

// parseArgs parses call arguments after "(" through ")".
func (p *parser) parseArgs(args *[]expr, kwName *[]string, kwArgs *[]expr) error {
	for !p.acceptOp(")") {
		if t := p.peek(); t.kind == tkName && p.toks[p.tp+1].kind == tkOp && p.toks[p.tp+1].s == "=" {
			p.tp += 2
			v, err := p.parseExpr()
			if err != nil {
				return err
			}
			*kwName, *kwArgs = append(*kwName, t.s), append(*kwArgs, v)
		} else {
			v, err := p.parseExpr()
			if err != nil {
				return err
			}
			*args = append(*args, v)
		}
		if !p.acceptOp(",") {
			return p.expectOp(")")
		}
	}
	return nil
}

func (p *parser) parseFilters(e expr) (expr, error) {
	for {
		t := p.peek()
		switch {
		case t.kind == tkOp && t.s == "|":
			p.tp++
			name := p.next()
			if name.kind != tkName {
				return nil, errAt(t.line, "expected a filter name after '|'")
			}
			f := &filterExpr{obj: e, name: name.s, line: name.line}
			if p.acceptOp("(") {
				if err := p.parseArgs(&f.args, &f.kwName, &f.kwArgs); err != nil {
					return nil, err
				}
			}
			e = f
		case t.kind == tkName && t.s == "is":
			p.tp++
			te := &testExpr{obj: e, line: t.line}
			if p.acceptName("not") {
				te.neg = true
			}
			name := p.next()
			if name.kind != tkName {
				return nil, errAt(t.line, "expected a test name after 'is'")
			}
			te.name = name.s
			switch name.s {
			case "none", "None":
				te.name = "none"
			case "true", "True":
				te.name = "true"
			case "false", "False":
				te.name = "false"
			}
			if p.acceptOp("(") {
				var kn []string
				var ka []expr
				if err := p.parseArgs(&te.args, &kn, &ka); err != nil {
					return nil, err
				}
			} else if a := p.peek(); a.kind == tkString || a.kind == tkInt || a.kind == tkFloat ||
				a.kind == tkName && a.s != "and" && a.s != "or" && a.s != "else" && a.s != "if" && a.s != "is" && a.s != "not" && a.s != "in" {
				arg, err := p.parsePrimary()
				if err != nil {
					return nil, err
				}
				if arg, err = p.parsePostfix(arg); err != nil {
					return nil, err
				}
				te.args = []expr{arg}
			}
			e = te
		default:
			return e, nil
		}
	}
}

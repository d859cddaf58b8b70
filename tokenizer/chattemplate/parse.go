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

package chattemplate

// The expression grammar, by precedence: tuples, or/and/not, comparisons, arithmetic, concatenation, unary, primaries, postfix calls and subscripts, filters.

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

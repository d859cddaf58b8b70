// Package chattemplate renders Hugging Face chat templates the way
// transformers' apply_chat_template does: a Jinja2 template with
// trim_blocks and lstrip_blocks on, transformers' own tojson (ensure_ascii
// off, keys in their order), raise_exception and strftime_now, and the
// tokenizer's special tokens (bos_token, eos_token, ...) as variables.
//
// The Jinja engine is this package's own: a lexer, parser and evaluator for
// the subset real chat templates use — if/elif/else, for (with loop
// variables, filters and else), set (names, namespace attributes, blocks),
// macros, break/continue, the usual filters and tests, Python string, list
// and dict methods, slicing and Python's value formatting. Anything else is
// refused with an error naming the line.
package chattemplate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moeforge/moeforge/tokenizer"
)

// Template is a compiled Jinja template.
type Template struct {
	Source string
	nodes  []node
}

// Compile parses a template.
func Compile(src string) (*Template, error) {
	segs, err := split(src)
	if err != nil {
		return nil, err
	}
	nodes, err := parseTemplate(segs)
	if err != nil {
		return nil, err
	}
	return &Template{Source: src, nodes: nodes}, nil
}

// Execute renders the template with vars as its top-level variables (on
// top of the globals range, namespace, dict and raise_exception).
func (t *Template) Execute(vars map[string]Value) (string, error) {
	g := &scope{vars: globals()}
	top := &scope{vars: map[string]Value{}, parent: g}
	for k, v := range vars {
		top.vars[k] = v
	}
	var b strings.Builder
	ev := &evaluator{out: &b}
	if err := ev.exec(t.nodes, top); err != nil {
		if err == errBreak || err == errContinue {
			return "", err
		}
		return "", err
	}
	return b.String(), nil
}

// Chat is a model's chat template with the special tokens transformers
// passes to it.
type Chat struct {
	Template *Template
	// Path is the file the template came from.
	Path string
	// Tokens maps bos_token, eos_token, unk_token, pad_token (those
	// tokenizer_config.json sets) to their strings.
	Tokens map[string]string
}

// Options are apply_chat_template's keyword arguments.
type Options struct {
	AddGenerationPrompt bool
	// Tools is the list of tool schemas (nil: none, rendered as None).
	Tools []Value
	// Vars holds extra template variables such as enable_thinking.
	Vars map[string]Value
	// Now is what strftime_now formats; the zero time means time.Now().
	Now time.Time
}

// ErrNoTemplate is returned by Load for a model without a chat template.
var ErrNoTemplate = errors.New("no chat template")

// Load reads the chat template of the model or tokenizer directory dir:
// chat_template.jinja when present (as transformers prefers it), else the
// chat_template of tokenizer_config.json (a string, or a list of named
// templates of which "default" is used), with the special tokens of
// tokenizer_config.json.
func Load(dir string) (*Chat, error) {
	c := &Chat{Tokens: map[string]string{}}
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	var cfg map[string]json.RawMessage
	if data, err := os.ReadFile(cfgPath); err == nil {
		if err := json.Unmarshal(data, &cfg); err != nil {
			return nil, fmt.Errorf("%s: %v", cfgPath, err)
		}
		for _, name := range []string{"bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"} {
			raw, ok := cfg[name]
			if !ok {
				continue
			}
			tok, err := tokenString(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %v", cfgPath, name, err)
			}
			if tok != nil {
				c.Tokens[name] = *tok
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	src, path, err := source(dir, cfg)
	if err != nil {
		return nil, err
	}
	c.Path = path
	t, err := Compile(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", c.Path, err)
	}
	c.Template = t
	return c, nil
}

// Source returns the chat template text of the model or tokenizer directory
// dir and the file it is in, by Load's rule (chat_template.jinja first, as
// transformers prefers it, else tokenizer_config.json's chat_template),
// without compiling it; an error matching ErrNoTemplate when there is none.
// Exporters that copy the template (GGUF's tokenizer.chat_template) use it.
func Source(dir string) (src, path string, err error) {
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	var cfg map[string]json.RawMessage
	if data, err := os.ReadFile(cfgPath); err == nil {
		if err := json.Unmarshal(data, &cfg); err != nil {
			return "", "", fmt.Errorf("%s: %v", cfgPath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", err
	}
	return source(dir, cfg)
}

// source is Source with tokenizer_config.json already parsed (cfg; nil
// when there is none).
func source(dir string, cfg map[string]json.RawMessage) (src, path string, err error) {
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	jinjaPath := filepath.Join(dir, "chat_template.jinja")
	if data, err := os.ReadFile(jinjaPath); err == nil {
		return string(data), jinjaPath, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", err
	}
	raw, ok := cfg["chat_template"]
	if !ok || string(raw) == "null" {
		return "", "", fmt.Errorf("%s: %w (neither chat_template.jinja nor a chat_template in tokenizer_config.json)", dir, ErrNoTemplate)
	}
	if err := json.Unmarshal(raw, &src); err == nil {
		return src, cfgPath, nil
	}
	var named []struct{ Name, Template string }
	if err := json.Unmarshal(raw, &named); err != nil {
		return "", "", fmt.Errorf("%s: chat_template is neither a string nor a list of named templates", cfgPath)
	}
	for _, n := range named {
		if n.Name == "default" && n.Template != "" {
			return n.Template, cfgPath, nil
		}
	}
	return "", "", fmt.Errorf("%s: chat_template has no template named \"default\"", cfgPath)
}

// tokenString reads a special token written as a string or as an
// AddedToken object {"content": ...}; nil for null.
func tokenString(raw json.RawMessage) (*string, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return &s, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
		return nil, errors.New("neither a string nor an object with a content")
	}
	return obj.Content, nil
}

// Message is one chat message with a text content.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Messages converts messages to the template value of a message list.
func Messages(msgs []Message) []Value {
	out := make([]Value, len(msgs))
	for i, m := range msgs {
		d := NewDict()
		d.Set("role", m.Role)
		d.Set("content", m.Content)
		out[i] = d
	}
	return out
}

// Render renders messages (a list of message dicts, e.g. from FromJSON or
// Messages) as apply_chat_template(messages, tokenize=False, ...) does.
func (c *Chat) Render(messages []Value, opt Options) (string, error) {
	vars := map[string]Value{}
	for k, v := range c.Tokens {
		vars[k] = v
	}
	for k, v := range opt.Vars {
		vars[k] = v
	}
	vars["messages"] = messages
	if opt.Tools != nil {
		vars["tools"] = opt.Tools
	} else {
		vars["tools"] = nil
	}
	vars["documents"] = nil
	vars["add_generation_prompt"] = opt.AddGenerationPrompt
	now := opt.Now
	vars["strftime_now"] = Callable(func(args []Value, _ *Dict) (Value, error) {
		if len(args) != 1 {
			return nil, errors.New("strftime_now takes one format string")
		}
		t := now
		if t.IsZero() {
			t = time.Now()
		}
		return Strftime(str(args[0]), t), nil
	})
	out, err := c.Template.Execute(vars)
	if err != nil {
		return "", fmt.Errorf("chat template %s: %w", c.Path, err)
	}
	return out, nil
}

// EndOfTurn returns the end-of-turn markers the template writes after a
// message (such as "<|im_end|>" for ChatML), which chat generation stops
// at besides the model's eos tokens.
func (c *Chat) EndOfTurn() []string {
	var out []string
	for _, m := range []string{"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>", "<|END_OF_TURN_TOKEN|>"} {
		if strings.Contains(c.Template.Source, m) {
			out = append(out, m)
		}
	}
	if eos, ok := c.Tokens["eos_token"]; ok && strings.Contains(c.Template.Source, "eos_token") {
		out = append(out, eos)
	}
	return out
}

var (
	weekdays = []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	months   = []string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}
)

// Strftime formats t like Python's time.strftime (C locale) for the common
// directives; unknown directives are copied.
func Strftime(format string, t time.Time) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 >= len(format) {
			b.WriteByte(format[i])
			continue
		}
		i++
		switch format[i] {
		case 'Y':
			fmt.Fprintf(&b, "%d", t.Year())
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			fmt.Fprintf(&b, "%02d", h)
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'b', 'h':
			b.WriteString(months[t.Month()-1][:3])
		case 'B':
			b.WriteString(months[t.Month()-1])
		case 'a':
			b.WriteString(weekdays[t.Weekday()][:3])
		case 'A':
			b.WriteString(weekdays[t.Weekday()])
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}

// StopIDs returns the token ids chat generation stops at: the model's eos
// ids (generation_config.json / config.json) that are special tokens, the
// tokenizer's eos_token and the template's end-of-turn markers. An eos id
// that names an ordinary vocabulary token is left out: a chat reply must be
// able to contain it (the shipped small models say eos_token_id 0, the
// token "!", an artifact of how they were made).
func (c *Chat) StopIDs(tok *tokenizer.Tokenizer, eos []int) []int {
	special := map[string]bool{}
	for _, s := range tok.SpecialTokens() {
		special[s] = true
	}
	var out []int
	add := func(id int) {
		for _, x := range out {
			if x == id {
				return
			}
		}
		out = append(out, id)
	}
	for _, id := range eos {
		if s, ok := tok.Token(id); ok && special[s] {
			add(id)
		}
	}
	for _, s := range c.EndOfTurn() {
		if id, ok := tok.TokenID(s); ok {
			add(id)
		}
	}
	if s, ok := c.Tokens["eos_token"]; ok {
		if id, ok := tok.TokenID(s); ok {
			add(id)
		}
	}
	return out
}

// RenderJSONL renders a file of conversations, one JSON object
// {"messages": [...]} per line (blank lines skipped), each through the
// template without a generation prompt: the text a chat model sees in
// training and serving, e.g. for calibration. Errors name the line.
func (c *Chat) RenderJSONL(name string, data []byte) ([]string, error) {
	var out []string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		v, err := FromJSON([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, i+1, err)
		}
		d, ok := v.(*Dict)
		if !ok {
			return nil, fmt.Errorf("%s:%d: not a JSON object", name, i+1)
		}
		mv, _ := d.Get("messages")
		msgs, ok := mv.([]Value)
		if !ok || len(msgs) == 0 {
			return nil, fmt.Errorf("%s:%d: no \"messages\" array", name, i+1)
		}
		text, err := c.Render(msgs, Options{})
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, i+1, err)
		}
		out = append(out, text)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no conversations", name)
	}
	return out, nil
}

package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// postProcessor is what encoding with special tokens adds around the ids of
// a single sequence: the ids before and after it. Hugging Face's
// TemplateProcessing, BertProcessing and RobertaProcessing come down to
// this for one sequence; ByteLevel adds nothing.
type postProcessor struct {
	before, after []int
}

type templateItem struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID string `json:"id"`
	} `json:"Sequence"`
}

type templateSpecialJSON struct {
	ID  string `json:"id"`
	IDs []int  `json:"ids"`
}

const supportedPostProcessors = "TemplateProcessing, ByteLevel, BertProcessing, RobertaProcessing, Sequence"

func (t *Tokenizer) parsePostProcessor(raw json.RawMessage) (postProcessor, error) {
	var pp postProcessor
	if isNull(raw) {
		return pp, nil
	}
	c, err := parseComponent("post_processor", raw)
	if err != nil {
		return pp, err
	}
	switch c.Type {
	case "ByteLevel":
		return pp, nil
	case "Sequence":
		// Each member wraps what the previous produced.
		for _, sub := range c.Processors {
			p, err := t.parsePostProcessor(sub)
			if err != nil {
				return pp, err
			}
			pp.before = append(append([]int(nil), p.before...), pp.before...)
			pp.after = append(pp.after, p.after...)
		}
		return pp, nil
	case "TemplateProcessing":
		seen := false
		for k, it := range c.Single {
			switch {
			case it.Sequence != nil:
				if seen || it.Sequence.ID != "A" {
					return pp, fmt.Errorf("post_processor TemplateProcessing: single[%d]: sequence %q is not the one sequence A", k, it.Sequence.ID)
				}
				seen = true
			case it.SpecialToken != nil:
				sp, ok := c.SpecialTokens[it.SpecialToken.ID]
				if !ok {
					return pp, fmt.Errorf("post_processor TemplateProcessing: special token %q is not in special_tokens", it.SpecialToken.ID)
				}
				// Hugging Face adds these ids as written, in the vocabulary
				// or not.
				for _, id := range sp.IDs {
					if id < 0 || id >= maxID {
						return pp, fmt.Errorf("post_processor TemplateProcessing: special token %q has id %d, outside [0, %d)", it.SpecialToken.ID, id, maxID)
					}
				}
				if seen {
					pp.after = append(pp.after, sp.IDs...)
				} else {
					pp.before = append(pp.before, sp.IDs...)
				}
			default:
				return pp, fmt.Errorf("post_processor TemplateProcessing: single[%d] is neither SpecialToken nor Sequence", k)
			}
		}
		if !seen {
			return pp, fmt.Errorf("post_processor TemplateProcessing: single has no sequence $A")
		}
		return pp, nil
	case "BertProcessing", "RobertaProcessing":
		cls, err := t.processorToken(c.Type, "cls", c.Cls)
		if err != nil {
			return pp, err
		}
		sep, err := t.processorToken(c.Type, "sep", c.Sep)
		if err != nil {
			return pp, err
		}
		return postProcessor{before: []int{cls}, after: []int{sep}}, nil
	}
	return pp, fmt.Errorf("post_processor %q is not supported (supported: %s)", c.Type, supportedPostProcessors)
}

// processorToken reads a ["token", id] pair of Bert/RobertaProcessing.
func (t *Tokenizer) processorToken(typ, what string, raw []json.RawMessage) (int, error) {
	var id int
	if len(raw) != 2 || json.Unmarshal(raw[1], &id) != nil {
		return 0, fmt.Errorf("post_processor %s: %s is not a [token, id] pair", typ, what)
	}
	if id < 0 || id >= maxID {
		return 0, fmt.Errorf("post_processor %s: %s id %d is outside [0, %d)", typ, what, id, maxID)
	}
	return id, nil
}

// EncodeWithSpecialTokens returns what calling the tokenizer in transformers
// returns by default (add_special_tokens=True): the ids of Encode with the
// post-processor's special tokens around them, such as Mistral's and
// Llama's "<s>" before the text. Tokenizers without such a post-processor
// (Qwen) give the same as Encode.
func (t *Tokenizer) EncodeWithSpecialTokens(text string) []int {
	ids := t.Encode(text)
	if len(t.post.before) == 0 && len(t.post.after) == 0 {
		return ids
	}
	out := make([]int, 0, len(ids)+len(t.post.before)+len(t.post.after))
	out = append(out, t.post.before...)
	out = append(out, ids...)
	return append(out, t.post.after...)
}

// tokenizerConfig is the part of tokenizer_config.json that transformers
// uses to rebuild the post-processor of Llama-family tokenizers.
type tokenizerConfig struct {
	TokenizerClass string          `json:"tokenizer_class"`
	AddBOS         *bool           `json:"add_bos_token"`
	AddEOS         *bool           `json:"add_eos_token"`
	BOS            json.RawMessage `json:"bos_token"`
	EOS            json.RawMessage `json:"eos_token"`
}

// llamaClasses are the tokenizer classes whose fast tokenizer in
// transformers (LlamaTokenizerFast and its relatives) replaces the
// post-processor of tokenizer.json by one built from add_bos_token (default
// true) and add_eos_token (default false).
var llamaClasses = map[string]bool{
	"LlamaTokenizer": true, "LlamaTokenizerFast": true,
	"CodeLlamaTokenizer": true, "CodeLlamaTokenizerFast": true,
}

// applyConfig reads tokenizer_config.json beside tokenizer.json, when there
// is one, and applies what transformers does with it at load time that
// changes encoding: for the Llama tokenizer classes (Mistral, Mixtral,
// DeepSeek-V3 declare LlamaTokenizer[Fast]) the special tokens added around
// the text.
func (t *Tokenizer) applyConfig(dir string) error {
	file := filepath.Join(dir, "tokenizer_config.json")
	data, err := os.ReadFile(file)
	if err != nil {
		return nil // no config: tokenizer.json alone decides
	}
	var c tokenizerConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if !llamaClasses[c.TokenizerClass] {
		return nil
	}
	addBOS := c.AddBOS == nil || *c.AddBOS
	addEOS := c.AddEOS != nil && *c.AddEOS
	var pp postProcessor
	for _, x := range []struct {
		add  bool
		raw  json.RawMessage
		name string
		dst  *[]int
	}{{addBOS, c.BOS, "bos_token", &pp.before}, {addEOS, c.EOS, "eos_token", &pp.after}} {
		if !x.add {
			continue
		}
		content, err := configToken(x.raw)
		if err != nil || content == "" {
			return fmt.Errorf("%s: add_%s is set but %s is missing or not a token", file, x.name, x.name)
		}
		id, ok := t.TokenID(content)
		if !ok {
			return fmt.Errorf("%s: %s %q is not in the tokenizer", file, x.name, content)
		}
		*x.dst = []int{id}
	}
	t.post = pp
	return nil
}

// configToken reads a special token of tokenizer_config.json: a string, or
// an AddedToken object with "content".
func configToken(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	err := json.Unmarshal(raw, &obj)
	return obj.Content, err
}

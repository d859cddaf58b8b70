package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/tokenizer"
)

func init() { addCommand(newTokenizeCmd) }

func newTokenizeCmd() *cobra.Command {
	var (
		tokDir string
		file   string
		asJSON bool
		decode bool
		addSp  bool
	)
	cmd := &cobra.Command{
		Use:   "tokenize --tokenizer DIR (--file F | TEXT)",
		Short: "Turn text into token ids, or ids back into text (--decode)",
		Long: `tokenize encodes text with a checkpoint's BPE tokenizer (tokenizer.json: Qwen, Llama 3,
Mistral/Mixtral, DeepSeek-V3 and other files built from the same components), exactly as Hugging
Face tokenizers does with add_special_tokens=False: special tokens written in the text
(<|im_start|>, <s>, ...) become their ids, and nothing is added around the text.

With --add-special-tokens the ids are what calling the tokenizer in transformers gives by
default: the post-processor's tokens are added around the text (Mistral's and Mixtral's <s>
first; DeepSeek-V3's <｜begin▁of▁sentence｜>, from tokenizer_config.json; nothing for Qwen).

The text is the single TEXT argument, or the contents of --file (- for standard input). The ids
are printed on one line separated by spaces, or as {"ids": [...]} with --json.

With --decode the input is token ids instead — whitespace-separated integers, a JSON array, or
the {"ids": [...]} document that --json prints — and the text is printed (followed by a newline
unless it ends with one), or {"text": "..."} with --json for the exact string.

DIR is a checkpoint directory holding tokenizer.json, or the tokenizer.json file itself.`,
		Example: `  moeforge tokenize --tokenizer testdata/models/qwen2_moe_small "Hello world"
  moeforge tokenize --tokenizer testdata/tokenizer --file prompt.txt --json
  moeforge tokenize --tokenizer testdata/tokenizer --decode 39 421 78 897
  moeforge tokenize --tokenizer DIR --json "some text" | moeforge tokenize --tokenizer DIR --decode --file -`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if tokDir == "" {
				return errors.New("tokenize: --tokenizer DIR is required (a checkpoint directory with tokenizer.json)")
			}
			if decode && addSp {
				return errors.New("tokenize: --add-special-tokens applies to encoding, not to --decode")
			}
			input, err := tokenizeInput(cmd, file, args, decode)
			if err != nil {
				return err
			}
			tok, err := loadTokenizer(tokDir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if decode {
				return runDecode(out, tok, input, asJSON)
			}
			ids := tok.Encode(input)
			if addSp {
				ids = tok.EncodeWithSpecialTokens(input)
			}
			if asJSON {
				return writeJSON(out, struct {
					IDs []int `json:"ids"`
				}{ids})
			}
			var b strings.Builder
			for i, id := range ids {
				if i > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(strconv.Itoa(id))
			}
			b.WriteByte('\n')
			_, err = io.WriteString(out, b.String())
			return err
		},
	}
	cmd.Flags().StringVar(&tokDir, "tokenizer", "", "checkpoint directory with tokenizer.json, or the tokenizer.json file")
	cmd.Flags().StringVar(&file, "file", "", "read the input from this file (- for standard input) instead of the arguments")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"ids": [...]} (or {"text": ...} with --decode)`)
	cmd.Flags().BoolVar(&decode, "decode", false, "the input is token ids; print their text")
	cmd.Flags().BoolVar(&addSp, "add-special-tokens", false, "add the special tokens transformers adds by default (e.g. Mistral's <s>)")
	return cmd
}

// tokenizeInput returns the text to encode or the ids to decode, from --file
// or the arguments.
func tokenizeInput(cmd *cobra.Command, file string, args []string, decode bool) (string, error) {
	switch {
	case file != "" && len(args) > 0:
		return "", errors.New("tokenize: give either --file or the input as arguments, not both")
	case file == "-":
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return "", fmt.Errorf("tokenize: reading standard input: %w", err)
		}
		return string(b), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("tokenize: %w", err)
		}
		return string(b), nil
	case decode:
		if len(args) == 0 {
			return "", errors.New("tokenize: --decode needs token ids as arguments or in --file")
		}
		return strings.Join(args, " "), nil
	case len(args) != 1:
		return "", fmt.Errorf("tokenize: want the text as one argument (quote it) or --file, got %d arguments", len(args))
	}
	return args[0], nil
}

// runDecode parses ids and prints their text.
func runDecode(out io.Writer, tok *tokenizer.Tokenizer, input string, asJSON bool) error {
	ids, err := parseIDs(input)
	if err != nil {
		return err
	}
	text, err := tok.Decode(ids)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(out, struct {
			Text string `json:"text"`
		}{text})
	}
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	_, err = io.WriteString(out, text)
	return err
}

// parseIDs reads token ids written as whitespace-separated integers, a JSON
// array, or a JSON object with an "ids" array.
func parseIDs(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") || strings.HasPrefix(s, "{") {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("tokenize: token ids: %w", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("tokenize: token ids: text after the JSON document")
		}
		if obj, ok := v.(map[string]any); ok {
			if v, ok = obj["ids"]; !ok {
				return nil, errors.New(`tokenize: token ids: JSON object without "ids"`)
			}
		}
		arr, ok := v.([]any)
		if !ok {
			return nil, errors.New("tokenize: token ids: want a JSON array of integers")
		}
		ids := make([]int, len(arr))
		for i, x := range arr {
			n, ok := x.(json.Number)
			if !ok {
				return nil, fmt.Errorf("tokenize: token ids: element %d is %v, not an integer", i, x)
			}
			id, err := strconv.Atoi(n.String())
			if err != nil {
				return nil, fmt.Errorf("tokenize: token ids: element %d: %q is not an integer", i, n)
			}
			ids[i] = id
		}
		return ids, nil
	}
	fields := strings.Fields(s)
	ids := make([]int, len(fields))
	for i, f := range fields {
		id, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("tokenize: %q is not a token id (want integers)", f)
		}
		ids[i] = id
	}
	return ids, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/serve"
	"github.com/moeforge/moeforge/tokenizer/chattemplate"
)

func init() { addCommand(newServeCmd) }

func newServeCmd() *cobra.Command {
	var (
		host, name    string
		port          int
		cfg           serve.Config
		drain         time.Duration
		tokenizerPath string
	)
	cmd := &cobra.Command{
		Use:   "serve MODEL",
		Short: "An OpenAI-compatible HTTP server for MODEL (chat and text completions, streamed, batched)",
		Long: `serve answers the OpenAI API on --host:--port:

  POST /v1/chat/completions   messages rendered with MODEL's chat template
  POST /v1/completions        a text prompt (or token ids)
  GET  /v1/models             the model id: MODEL's directory name, or --served-model-name
  GET  /health                200 while serving, 503 while shutting down

Requests take max_tokens (or max_completion_tokens), temperature, top_p, top_k,
repetition_penalty, seed, stop (a string or up to 4), stream (server-sent events ending with
"data: [DONE]") and stream_options.include_usage; every response reports usage. Unset
sampling fields follow generation_config.json. Chat replies stop as in "moeforge chat".

Concurrent requests share forward passes (continuous batching): every step runs one batched
forward pass over all active sequences, each with its own KV cache (a new prompt is read 256
tokens per step), up to --max-batch sequences; up to --max-queue more wait, beyond that requests get 429. Errors are OpenAI-style
JSON: malformed JSON 400, a body over --max-body-bytes 413, a prompt plus max_tokens beyond
max_position_embeddings 400, unknown model 404, shutting down 503. A client that disconnects
cancels its generation. SIGINT/SIGTERM stop accepting requests, let those in flight finish
(at most --drain-timeout) and exit.`,
		Example: `  moeforge serve /tmp/mf/moe_gptq --port 8000
  curl http://127.0.0.1:8000/v1/chat/completions -H "Content-Type: application/json" -d '{
    "model": "moe_gptq",
    "messages": [{"role": "system", "content": "You are a helpful assistant."},
                 {"role": "user", "content": "Give me a short introduction to large language model."}],
    "temperature": 0.7, "top_p": 0.8, "max_tokens": 64}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			m, tok, err := openWithTokenizer(dir, tokenizerPath)
			if err != nil {
				return err
			}
			defer m.Close()
			signalDrains.Store(true)
			chat, err := chattemplate.Load(dir)
			if err != nil && !errors.Is(err, chattemplate.ErrNoTemplate) {
				return err
			}
			gen, err := model.LoadGenerationConfig(dir, m)
			if err != nil {
				return err
			}
			cfg.ModelID = name
			if cfg.ModelID == "" {
				abs, _ := filepath.Abs(dir)
				cfg.ModelID = filepath.Base(abs)
			}
			srv := serve.New(m, tok, chat, gen, cfg)
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				return err
			}
			hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
			errc := make(chan error, 1)
			go func() { errc <- hs.Serve(ln) }()
			if !global.quiet {
				if chat == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "serve: %s has no chat template; /v1/chat/completions will answer 400\n", dir)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "serving %s as %q on http://%s (max batch %d, queue %d)\n",
					dir, cfg.ModelID, ln.Addr(), max(cfg.MaxBatch, 16), max(cfg.MaxQueue, 64))
			}
			select {
			case err := <-errc:
				return err
			case <-cmd.Context().Done():
			}
			if !global.quiet {
				fmt.Fprintln(cmd.ErrOrStderr(), "serve: shutting down, finishing requests in flight")
			}
			ctx, cancel := context.WithTimeout(context.Background(), drain)
			defer cancel()
			srv.Shutdown(ctx) // new requests get 503 while the others finish
			hs.Shutdown(ctx)
			st := srv.Engine().Stats()
			if !global.quiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "serve: %d tokens in %d steps (%.2f sequences per step)\n", st.Tokens, st.Steps, st.MeanBatch)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&host, "host", "127.0.0.1", "address to listen on")
	f.IntVar(&port, "port", 8000, "port to listen on (0: any free port)")
	f.StringVar(&name, "served-model-name", "", "model id clients use (default: MODEL's directory name)")
	f.IntVar(&cfg.MaxBatch, "max-batch", 16, "most sequences in one forward step")
	f.IntVar(&cfg.MaxQueue, "max-queue", 64, "most requests waiting for a place in the batch; more get 429")
	f.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 1<<20, "largest request body; larger gets 413")
	f.IntVar(&cfg.DefaultMaxTokens, "default-max-tokens", 512, "max_tokens of a request that gives none")
	f.DurationVar(&drain, "drain-timeout", 30*time.Second, "on SIGTERM, how long requests in flight may take to finish")
	f.StringVar(&tokenizerPath, "tokenizer", "", "tokenizer.json or a directory holding it (default: MODEL's)")
	return cmd
}

// Package export converts Hugging Face checkpoints (float or GPTQ) into
// the files other runtimes load; the formats' own layouts, readers and
// writers live in formats/gguf and formats/mlx. One entry point and one
// refusal check per target, one file per target and architecture:
//
//   - GGUF (llama.cpp, ollama): GGUF(ctx, in, out, GGUFOptions) writes one
//     file; CheckGGUF refuses from config.json what llama.cpp would compute
//     differently; PlanGGUF and (*GGUFPlan).Write are the two halves of
//     GGUF for callers that bring their own writer. gguf_read.go registers
//     the inverse mapping as a model.Source.
//   - MLX (mlx-lm): MLX(ctx, in, out, MLXOptions) writes a directory;
//     CheckMLX refuses what mlx-lm's model file would compute differently.
//     formats/mlx reads the result back.
//
// Both write under a temporary name, rename on success and leave nothing
// behind on error; their options carry Force and Progress.
package export

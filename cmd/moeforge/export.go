package main

import "github.com/spf13/cobra"

func init() { addCommand(newExportCmd) }

// exportCommands are the subcommands of export, one file each
// (export_gguf.go, export_mlx.go, …).
var exportCommands []func() *cobra.Command

func addExportCommand(f func() *cobra.Command) { exportCommands = append(exportCommands, f) }

func newExportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export FORMAT --in DIR --out PATH [options]",
		Short: "Write a checkpoint in another runtime's format (gguf for llama.cpp and ollama, mlx)",
		Args:  cobra.NoArgs,
	}
	for _, f := range exportCommands {
		cmd.AddCommand(f())
	}
	return cmd
}

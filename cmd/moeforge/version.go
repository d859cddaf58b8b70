package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time with -ldflags "-X main.version=v1.2.3".
var version = ""

func init() { addCommand(newVersionCmd) }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the moeforge version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := version
			if v == "" {
				v = "devel"
				if info, ok := debug.ReadBuildInfo(); ok {
					if info.Main.Version != "" && info.Main.Version != "(devel)" {
						v = info.Main.Version
					}
					for _, s := range info.Settings {
						if s.Key == "vcs.revision" && len(s.Value) >= 12 {
							v += "+" + s.Value[:12]
						}
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "moeforge %s %s %s/%s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

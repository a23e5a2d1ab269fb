package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

const versionUsage = `outbox version: print the version of the outbox command and of the outbox modules it is built from.

Usage:
  outbox version
  outbox --version`

func runVersion(_ context.Context, e *env, args []string) error {
	f := newFlags("outbox version", versionUsage)
	if err := f.parse(e, args, false); err != nil {
		return err
	}
	printVersion(e)
	return nil
}

// printVersion prints the module version of the command (as `go install …@version` recorded it;
// "(devel)" for a build from a source tree) and of each outbox module linked in.
func printVersion(e *env) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintf(e.stdout, "outbox (unknown version) %s\n", runtime.Version())
		return
	}
	fmt.Fprintf(e.stdout, "outbox %s %s\n", moduleVersion(info.Main), runtime.Version())
	for _, dep := range info.Deps {
		if strings.HasPrefix(dep.Path, "github.com/txoutbox/outbox") {
			fmt.Fprintf(e.stdout, "  %s %s\n", dep.Path, moduleVersion(*dep))
		}
	}
}

func moduleVersion(m debug.Module) string {
	if m.Replace != nil {
		return m.Replace.Version + " (replaced by " + m.Replace.Path + ")"
	}
	if m.Version == "" {
		return "(devel)"
	}
	return m.Version
}

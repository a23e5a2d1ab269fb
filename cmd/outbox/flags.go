package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// flags is a command's flag set plus the environment variable behind each flag. Defaults from
// the environment are applied after parsing, rather than as flag defaults, so that --help never
// prints a variable's value (a connection string may hold a password).
type flags struct {
	fs      *flag.FlagSet
	cmd     string // "outbox relay"
	usage   string // synopsis and description, printed by --help above the flags
	envVars [][2]string
}

func newFlags(cmd, usage string) *flags {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by exitCode; help by parse
	fs.Usage = func() {}
	return &flags{fs: fs, cmd: cmd, usage: usage}
}

// env makes the environment variable v the default of flag name, and says so in --help.
func (f *flags) env(name, v string) {
	fl := f.fs.Lookup(name)
	if fl == nil {
		panic("outbox: no flag " + name) // a programming error, caught by any test of the command
	}
	fl.Usage += " (env " + v + ")"
	f.envVars = append(f.envVars, [2]string{name, v})
}

// parse parses args, prints help for --help (returning flag.ErrHelp), fills unset flags from
// the environment and rejects positional arguments unless positional is true.
func (f *flags) parse(e *env, args []string, positional bool) error {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.printHelp(e.stdout)
			return err
		}
		return usagef(f.cmd, "%v", err)
	}
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	for _, p := range f.envVars {
		if set[p[0]] {
			continue
		}
		if v := e.getenv(p[1]); v != "" {
			if err := f.fs.Set(p[0], v); err != nil {
				// The flag package's parse errors never quote the value, which may be secret.
				return usagef(f.cmd, "%s: invalid value for --%s: %v", p[1], p[0], err)
			}
		}
	}
	if !positional && f.fs.NArg() > 0 {
		return usagef(f.cmd, "unexpected argument %q", f.fs.Arg(0))
	}
	return nil
}

func (f *flags) printHelp(w io.Writer) {
	fmt.Fprintln(w, strings.TrimSpace(f.usage))
	fmt.Fprintln(w, "\nFlags:")
	f.fs.SetOutput(w)
	f.fs.PrintDefaults()
	f.fs.SetOutput(io.Discard)
}

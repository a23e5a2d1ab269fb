package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// usageError is a mistake in the command line or the environment: reported in one line with
// exit code 2, before anything connects anywhere.
type usageError struct {
	cmd string // e.g. "outbox relay"
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// runError is a failure at run time of cmd: exit code 1.
type runError struct {
	cmd string
	err error
}

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

func failed(cmd string, err error) error {
	if err == nil {
		return nil
	}
	var ue *usageError
	var re *runError
	if errors.As(err, &ue) || errors.As(err, &re) {
		return err
	}
	return &runError{cmd: cmd, err: err}
}

// exitCode reports err on w in one line and returns the exit code it means.
func exitCode(w io.Writer, err error) int {
	var ue *usageError
	var re *runError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(w, "%s: %s (see \"%s --help\")\n", ue.cmd, oneLine(ue.msg), ue.cmd)
		return 2
	case errors.As(err, &re):
		fmt.Fprintf(w, "%s: %s\n", re.cmd, oneLine(re.err.Error()))
		return 1
	}
	fmt.Fprintf(w, "outbox: %s\n", oneLine(err.Error()))
	return 1
}

// oneLine keeps a message on one line, whatever a driver's error text holds.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

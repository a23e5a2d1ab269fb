package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/txoutbox/outbox/envconfig"
)

var updateDocs = flag.Bool("update", false, "rewrite the generated part of docs/cli.md")

const (
	docsPath       = "../../docs/cli.md"
	docsTableBegin = "<!-- The table of variables is generated from the command's settings: cd cmd/outbox && go test -run TestDocsListEverySetting -update -->\n"
	docsTableEnd   = "<!-- end of the generated table -->\n"
)

// docsTable is the table of every variable the command reads, as docs/cli.md shows it.
func docsTable() string {
	var b strings.Builder
	b.WriteString("| Variable | Flag | Default | Meaning |\n| --- | --- | --- | --- |\n")
	for _, s := range allSettings() {
		flagName := "`--" + s.flag + "`"
		if s.kind == envconfig.KindSecret {
			flagName = "none: environment only"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", s.env, flagName, s.def, strings.ReplaceAll(s.doc, "|", `\|`))
	}
	return b.String()
}

// docs/cli.md lists every variable of the command, with the flag, default and meaning the
// command itself uses (the root package's relay settings among them, shared with outboxfx).
func TestDocsListEverySetting(t *testing.T) {
	raw, err := os.ReadFile(docsPath)
	if os.IsNotExist(err) {
		t.Skip("docs/cli.md is not beside this module: run from the repository")
	}
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	begin, end := strings.Index(doc, docsTableBegin), strings.Index(doc, docsTableEnd)
	if begin < 0 || end < begin {
		t.Fatalf("docs/cli.md lacks the markers of the generated table:\n%s%s", docsTableBegin, docsTableEnd)
	}
	want := docsTable()
	if got := doc[begin+len(docsTableBegin) : end]; got != want {
		if *updateDocs {
			if err := os.WriteFile(docsPath, []byte(doc[:begin+len(docsTableBegin)]+want+doc[end:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("docs/cli.md's table of variables is out of date (go test -run TestDocsListEverySetting -update); want:\n%s", want)
	}
	// Every variable a command reads is in the list: none is read behind its back.
	for _, args := range [][]string{{"relay"}, {"status"}, {"migrate"}, {"dead", "list"}} {
		var read []string
		e := &env{stdout: &strings.Builder{}, stderr: &strings.Builder{}, getenv: func(k string) string { read = append(read, k); return "" }}
		_ = run(t.Context(), e, args)
		for _, k := range read {
			if !strings.Contains(want, "`"+k+"`") {
				t.Errorf("outbox %s reads %s, which docs/cli.md does not list", strings.Join(args, " "), k)
			}
		}
	}
}

// Every flag has an environment variable, or is one of the exceptions docs/cli.md lists by name.
func TestDocsListTheFlagsWithoutVariable(t *testing.T) {
	raw, err := os.ReadFile(docsPath)
	if os.IsNotExist(err) {
		t.Skip("docs/cli.md is not beside this module: run from the repository")
	}
	if err != nil {
		t.Fatal(err)
	}
	_, exceptions, _ := strings.Cut(string(raw), "The exceptions, which hold no secret")
	exceptions, _, _ = strings.Cut(exceptions, "\n\n")
	for _, cmd := range [][]string{{"relay"}, {"migrate"}, {"status"}, {"dead", "list"}, {"dead", "requeue"}, {"dead", "purge"}, {"bench"}, {"version"}, {"console"}} {
		_, help, _ := runCLI(t, nil, append(cmd, "--help")...)
		lines := strings.Split(help, "\n")
		for i, line := range lines {
			name, ok := strings.CutPrefix(line, "  --")
			if !ok || i+1 == len(lines) {
				continue
			}
			name, _, _ = strings.Cut(name, " ")
			if !strings.Contains(lines[i+1], "(env OUTBOX_") && !strings.Contains(exceptions, "`--"+name+"`") {
				t.Errorf("outbox %s --%s has no variable and is not among docs/cli.md's exceptions", strings.Join(cmd, " "), name)
			}
		}
	}
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/envconfig"
)

// flags is a command's flag set plus the environment variable behind each flag. Defaults from
// the environment are applied after parsing, rather than as flag defaults, so that --help never
// prints a variable's value (a connection string may hold a password).
type flags struct {
	fs      *flag.FlagSet
	cmd     string // "outbox relay"
	usage   string // synopsis and description, printed by --help above the flags
	envVars [][2]string
	// secrets are variables read from the environment only: credentials, never flags.
	secrets []secretVar
	// kinds says what each flag's value is, for errors that must not repeat the value.
	kinds map[string]envconfig.SettingKind
	// fields names the flag of each config field, by component ("relay", "sqs"), so a
	// validation error is reported under the flag the user wrote.
	fields map[[2]string]string
	// given holds the flags set on the command line or from their variable.
	given map[string]bool
}

type secretVar struct {
	env string
	set func(string) error
}

func newFlags(cmd, usage string) *flags {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by exitCode; help by parse
	fs.Usage = func() {}
	return &flags{fs: fs, cmd: cmd, usage: usage, kinds: map[string]envconfig.SettingKind{}, fields: map[[2]string]string{}, given: map[string]bool{}}
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

// addSettings offers each setting as a flag of its name, filled from its variable when the
// command line does not set it; a secret setting is read from its variable only.
func addSettings[C any](f *flags, component string, c *C, settings []envconfig.Setting[C]) {
	for _, s := range settings {
		set := func(v string) error { return s.Set(c, strings.TrimSpace(v)) }
		if s.Kind == envconfig.KindSecret {
			f.secrets = append(f.secrets, secretVar{env: s.Env, set: set})
			f.fields[[2]string{component, s.Field}] = s.Env
			continue
		}
		usage := s.Doc
		if s.Default != "" && s.Default != "false" && s.Default != "none" {
			usage += " (default " + s.Default + ")"
		}
		f.fs.Var(&settingValue{set: set, isBool: s.Kind == envconfig.KindBool}, s.Flag(), usage)
		f.env(s.Flag(), s.Env)
		f.kinds[s.Flag()] = s.Kind
		if s.Field != "" {
			f.fields[[2]string{component, s.Field}] = "--" + s.Flag() + " (" + s.Env + ")"
		}
	}
}

// settingValue is a flag backed by a Setting's parser.
type settingValue struct {
	set    func(string) error
	isBool bool
	text   string
}

func (v *settingValue) String() string {
	if v == nil {
		return ""
	}
	return v.text
}

func (v *settingValue) Set(s string) error {
	if err := v.set(s); err != nil {
		return err
	}
	v.text = s
	return nil
}

func (v *settingValue) IsBoolFlag() bool { return v.isBool }

// parse parses args, prints help for --help (returning flag.ErrHelp), fills unset flags from
// the environment and rejects positional arguments unless positional is true. No error repeats
// an argument or a value: what was not understood may be a password typed in the wrong place.
func (f *flags) parse(e *env, args []string, positional bool) error {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.printHelp(e.stdout, chosenTransport(args, e.getenv("OUTBOX_TRANSPORT")))
			return err
		}
		return f.parseError(err)
	}
	f.fs.Visit(func(fl *flag.Flag) { f.given[fl.Name] = true })
	for _, p := range f.envVars {
		if f.given[p[0]] {
			continue
		}
		if v := e.getenv(p[1]); strings.TrimSpace(v) != "" {
			if err := f.fs.Set(p[0], v); err != nil {
				return usagef(f.cmd, "%s: invalid value for --%s: %s", p[1], p[0], f.want(p[0]))
			}
			f.given[p[0]] = true
		}
	}
	for _, s := range f.secrets {
		if v := e.getenv(s.env); v != "" {
			if err := s.set(v); err != nil {
				return usagef(f.cmd, "%s: invalid value", s.env)
			}
		}
	}
	if !positional && f.fs.NArg() > 0 {
		return usagef(f.cmd, "unexpected argument (not repeated: it may hold a secret); every value goes in a flag, such as --store URL")
	}
	return nil
}

// parseError rewrites an error of the flag package, which quotes what it did not understand,
// into one that names the flag at most.
func (f *flags) parseError(err error) error {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "flag provided but not defined: -"):
		// The flag package cuts the value off at "=": what is left is a name, repeated only
		// when it looks like one (never a URL or token typed after --).
		name := strings.TrimPrefix(msg, "flag provided but not defined: -")
		if nameOrNothing("", name) == "" {
			return usagef(f.cmd, "unknown flag (not repeated: it may hold a secret)")
		}
		var names []string
		f.fs.VisitAll(func(fl *flag.Flag) { names = append(names, fl.Name) })
		if s := suggest(name, names); s != "" {
			return usagef(f.cmd, "unknown flag --%s (did you mean --%s?)", name, s)
		}
		return usagef(f.cmd, "unknown flag --%s", name)
	case strings.HasPrefix(msg, "flag needs an argument: -"):
		if name := strings.TrimPrefix(msg, "flag needs an argument: -"); f.fs.Lookup(name) != nil {
			return usagef(f.cmd, "%s needs a value", f.describe(name))
		}
	case strings.HasPrefix(msg, "invalid value ") || strings.HasPrefix(msg, "invalid boolean value "):
		// "invalid value %q for flag -%s: %v": find the flag by its name, never cut the value out.
		var name string
		f.fs.VisitAll(func(fl *flag.Flag) {
			if (strings.Contains(msg, " for flag -"+fl.Name+": ") || strings.Contains(msg, " for -"+fl.Name+": ")) && len(fl.Name) > len(name) {
				name = fl.Name
			}
		})
		if name != "" {
			return usagef(f.cmd, "%s: %s", f.describe(name), f.want(name))
		}
	}
	return usagef(f.cmd, "bad command line (not repeated: it may hold a secret)")
}

// describe names a flag and its variable: --batch-size (OUTBOX_BATCH_SIZE).
func (f *flags) describe(name string) string {
	for _, p := range f.envVars {
		if p[0] == name {
			return "--" + name + " (" + p[1] + ")"
		}
	}
	return "--" + name
}

// want says what a flag's value must be, for errors that cannot show the value given.
func (f *flags) want(name string) string {
	kind, ok := f.kinds[name]
	if !ok {
		if fl := f.fs.Lookup(name); fl != nil {
			if g, isGetter := fl.Value.(flag.Getter); isGetter {
				switch g.Get().(type) {
				case int, int64, uint, uint64:
					kind = envconfig.KindInt
				case time.Duration:
					kind = envconfig.KindDuration
				case float64:
					kind = envconfig.KindNumber
				case bool:
					kind = envconfig.KindBool
				}
			}
		}
	}
	switch kind {
	case envconfig.KindInt:
		return "not an integer"
	case envconfig.KindDuration:
		return "not a duration (examples: 500ms, 30s, 1m)"
	case envconfig.KindNumber:
		return "not a number"
	case envconfig.KindBool:
		return "not true or false"
	case "":
		return "invalid value"
	}
	return "not " + string(kind)
}

// configError reports a validation error under the flag (or variable) of the field it names,
// when one of this command's flags sets that field.
func (f *flags) configError(err error) error {
	var ce *outbox.ConfigError
	if errors.As(err, &ce) {
		// An element of a list or map (Brokers[1], Routes["x"]) is reported under the flag
		// of the whole; the problem quotes the element.
		field, _, _ := strings.Cut(ce.Field, "[")
		if name, ok := f.fields[[2]string{ce.Component, field}]; ok {
			return usagef(f.cmd, "%s: %s", name, ce.Problem)
		}
	}
	return usagef(f.cmd, "%v", err)
}

// printHelp prints the usage and the flags, grouped: the command's own, the store's, the WAL
// mode's, and the transports', each transport's apart. When transport names one (--transport on
// the command line or OUTBOX_TRANSPORT), only its flags are listed among the transports'.
func (f *flags) printHelp(w io.Writer, transport string) {
	fmt.Fprintln(w, strings.TrimSpace(f.usage))
	groups := map[string][]string{}
	f.fs.VisitAll(func(fl *flag.Flag) {
		group := flagGroup(fl.Name)
		if transport != "" && slices.Contains(transportKinds, group) && group != transport {
			return
		}
		kind := ""
		switch k := f.kinds[fl.Name]; {
		case k == envconfig.KindBool:
		case k != "":
			kind = " " + string(k)
		default:
			if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				kind = " value"
				if g, ok := fl.Value.(flag.Getter); ok {
					switch g.Get().(type) {
					case int:
						kind = " " + string(envconfig.KindInt)
					case time.Duration:
						kind = " " + string(envconfig.KindDuration)
					case string:
						kind = " " + string(envconfig.KindString)
					}
				}
			}
		}
		usage := fl.Usage
		if _, isSetting := f.kinds[fl.Name]; !isSetting && fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "0" && fl.DefValue != "0s" && fl.DefValue != "[]" {
			usage += " (default " + fl.DefValue + ")"
		}
		groups[group] = append(groups[group], fmt.Sprintf("  --%s%s\n    \t%s", fl.Name, kind, usage))
	})
	for _, g := range append([]string{"", "store", "wal"}, transportKinds...) {
		lines := groups[g]
		if len(lines) == 0 {
			continue
		}
		sort.Strings(lines)
		fmt.Fprintf(w, "\n%s:\n%s\n", groupTitle(g, len(groups) > 1), strings.Join(lines, "\n"))
	}
	if transport == "" && len(groups["sqs"]) > 0 && len(groups["kafka"]) > 0 {
		fmt.Fprintln(w, "\nWith --transport KIND, --help lists only that transport's flags.")
	}
	var names []string
	for _, s := range f.secrets {
		if transport == "" || strings.HasPrefix(s.env, "OUTBOX_"+strings.ToUpper(transport)+"_") {
			names = append(names, s.env)
		}
	}
	if len(names) > 0 {
		fmt.Fprintf(w, "\nFrom the environment only (credentials are never flags): %s.\n", strings.Join(names, ", "))
	}
}

// storeFlagNames are the flag names of the store's settings that carry no store's prefix.
var storeFlagNames = []string{"store", "schema", "table", "collection", "database", "keep-delivered", "retain-delivered", "cleanup-interval", "postgres-mode"}

// flagGroup is the group --help lists a flag under: a transport's kind for its flags
// (--nats-url: "nats"), "store", "wal", or "" for the command's own.
func flagGroup(name string) string {
	prefix, _, _ := strings.Cut(name, "-")
	switch {
	case slices.Contains(transportKinds, prefix) && name != prefix:
		return prefix
	case prefix == "wal":
		return "wal"
	case slices.Contains(storeFlagNames, name):
		return "store"
	}
	return ""
}

func groupTitle(group string, several bool) string {
	switch {
	case !several:
		return "Flags"
	case group == "":
		return "Flags"
	case group == "store":
		return "Store flags"
	case group == "wal":
		return "PostgreSQL WAL mode flags (with --postgres-mode wal)"
	}
	return transportNames[group] + " transport flags"
}

// transportNames are the transports' names as their projects write them.
var transportNames = map[string]string{"sqs": "SQS", "kafka": "Kafka", "nats": "NATS", "rabbitmq": "RabbitMQ", "memory": "Memory"}

// chosenTransport is the transport --help was asked about: the last --transport on the command
// line (which may come after --help, where parsing stopped), else the environment's.
func chosenTransport(args []string, fromEnv string) string {
	kind := strings.TrimSpace(fromEnv)
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != "transport" || !strings.HasPrefix(a, "-") {
			continue
		}
		if !hasValue && i+1 < len(args) {
			value = args[i+1]
		}
		kind = value
	}
	if !slices.Contains(transportKinds, kind) {
		return ""
	}
	return kind
}

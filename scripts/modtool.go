//go:build ignore

// modtool prepares the modules of go.work for a release, for scripts/release and
// scripts/check-install. It uses the standard library only, so it runs anywhere Go does:
//
//	go run scripts/modtool.go modules                  # path and directory of every module
//	go run scripts/modtool.go verify                   # the repository's module rules hold
//	go run scripts/modtool.go rewrite VERSION          # inner requires at VERSION, no replace
//	go run scripts/modtool.go pack VERSION PROXYDIR    # tidy each module alone, then publish it
//	go run scripts/modtool.go check PROXYDIR [-test]   # build (and vet, test) each module alone
//
// pack publishes every module at VERSION into PROXYDIR, a file-based module proxy
// (GOPROXY=file://PROXYDIR), in dependency order: each module is tidied with GOWORK=off against
// the proxy, so its go.sum gets the checksums of the modules packed before it, exactly as a user
// would see them once the tags exist. Run from the root of the tree to release; it changes
// go.mod and go.sum files and tags nothing.
package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// prefix is the module path every module of the repository starts with.
const prefix = "github.com/txoutbox/outbox"

type module struct {
	Path string
	Dir  string
	Deps []string // the repository's modules it requires
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch args := os.Args[2:]; os.Args[1] {
	case "modules":
		var mods []module
		if mods, err = modules(); err == nil {
			for _, m := range mods {
				fmt.Printf("%s %s\n", m.Path, m.Dir)
			}
		}
	case "verify":
		if len(args) != 0 {
			usage()
		}
		err = verify()
	case "rewrite":
		if len(args) != 1 {
			usage()
		}
		err = rewrite(args[0])
	case "pack":
		if len(args) != 2 {
			usage()
		}
		err = pack(args[0], args[1])
	case "check":
		if len(args) < 1 || len(args) > 2 || (len(args) == 2 && args[1] != "-test") {
			usage()
		}
		err = check(args[0], len(args) == 2)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "modtool:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go run scripts/modtool.go modules | verify | rewrite VERSION | pack VERSION PROXYDIR | check PROXYDIR [-test]")
	os.Exit(2)
}

var semver = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)

func checkVersion(v string) error {
	if !semver.MatchString(v) {
		return fmt.Errorf("%q is not a version like v1.2.3 or v1.2.3-rc.1", v)
	}
	return nil
}

// modules lists the modules of go.work, read now (engineers add modules), with their
// requirements on each other.
func modules() ([]module, error) {
	out, err := exec.Command("go", "work", "edit", "-json").Output()
	if err != nil {
		return nil, fmt.Errorf("go work edit -json: %w (run from the repository root)", err)
	}
	var work struct{ Use []struct{ DiskPath string } }
	if err := json.Unmarshal(out, &work); err != nil {
		return nil, err
	}
	var mods []module
	for _, u := range work.Use {
		dir, err := filepath.Abs(u.DiskPath)
		if err != nil {
			return nil, err
		}
		gm, err := readGoMod(dir)
		if err != nil {
			return nil, err
		}
		m := module{Path: gm.Module.Path, Dir: dir}
		for _, r := range gm.Require {
			if strings.HasPrefix(r.Path, prefix) {
				m.Deps = append(m.Deps, r.Path)
			}
		}
		mods = append(mods, m)
	}
	return mods, nil
}

type goMod struct {
	Module  struct{ Path string }
	Go      string
	Require []struct {
		Path    string
		Version string
	}
	Replace []struct{ Old struct{ Path string } }
}

func readGoMod(dir string) (goMod, error) {
	cmd := exec.Command("go", "mod", "edit", "-json")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return goMod{}, fmt.Errorf("%s: go mod edit -json: %w", dir, err)
	}
	var gm goMod
	return gm, json.Unmarshal(out, &gm)
}

// rewrite sets every requirement on a module of the repository to version and drops every
// replace directive of one: released modules must resolve through the proxy.
func rewrite(version string) error {
	if err := checkVersion(version); err != nil {
		return err
	}
	mods, err := modules()
	if err != nil {
		return err
	}
	for _, m := range mods {
		gm, err := readGoMod(m.Dir)
		if err != nil {
			return err
		}
		var edits []string
		for _, r := range gm.Require {
			if strings.HasPrefix(r.Path, prefix) && r.Version != version {
				edits = append(edits, "-require="+r.Path+"@"+version)
			}
		}
		for _, r := range gm.Replace {
			if strings.HasPrefix(r.Old.Path, prefix) {
				edits = append(edits, "-dropreplace="+r.Old.Path)
			}
		}
		if len(edits) == 0 {
			continue
		}
		if err := run(m.Dir, nil, "go", append([]string{"mod", "edit"}, edits...)...); err != nil {
			return err
		}
	}
	return rewriteWork(mods, version)
}

// workComment explains go.work's replacements; rewriteWork writes it above them.
const workComment = `// The modules require each other at the version about to be released (scripts/release rewrites
// it), which the module proxy may not have yet: in the workspace, that version of each module is
// its directory. The replacements name the version, as the go command requires for a module the
// workspace uses; dependents never read this file.
`

// rewriteWork makes go.work map version of every module to its directory, and no other
// version: the workspace then never asks the proxy for a version not yet published.
func rewriteWork(mods []module, version string) error {
	work, err := readWork()
	if err != nil {
		return err
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	var drops []string
	for _, r := range work.Replace {
		if strings.HasPrefix(r.Old.Path, prefix) {
			drops = append(drops, "-dropreplace="+r.Old.Path+versionSuffix(r.Old.Version))
		}
	}
	if len(drops) > 0 {
		if err := run(wd, nil, "go", append([]string{"work", "edit"}, drops...)...); err != nil {
			return err
		}
	}
	text, err := os.ReadFile("go.work")
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(strings.Replace(string(text), workComment, "", 1), "\n"))
	b.WriteString("\n\n" + workComment + "replace (\n")
	for _, m := range mods {
		rel, err := filepath.Rel(wd, m.Dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\t%s %s => ./%s\n", m.Path, version, strings.TrimPrefix(filepath.ToSlash(rel), "."))
	}
	b.WriteString(")\n")
	if err := os.WriteFile("go.work", []byte(b.String()), 0o644); err != nil {
		return err
	}
	return run(wd, nil, "go", "work", "edit", "-fmt")
}

func versionSuffix(v string) string {
	if v == "" {
		return ""
	}
	return "@" + v
}

type goWork struct {
	Use     []struct{ DiskPath string }
	Replace []struct {
		Old struct{ Path, Version string }
		New struct{ Path, Version string }
	}
}

func readWork() (goWork, error) {
	out, err := exec.Command("go", "work", "edit", "-json").Output()
	if err != nil {
		return goWork{}, fmt.Errorf("go work edit -json: %w (run from the repository root)", err)
	}
	var w goWork
	return w, json.Unmarshal(out, &w)
}

// verify checks what makes the modules installable and the workspace work: requirements on
// each other all at one version, no replace directive in any go.mod, one go directive, and
// go.work mapping that version of every module to its directory.
func verify() error {
	mods, err := modules()
	if err != nil {
		return err
	}
	work, err := readWork()
	if err != nil {
		return err
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	var problems []string
	versions := map[string]bool{}
	goVersion := ""
	for _, m := range mods {
		gm, err := readGoMod(m.Dir)
		if err != nil {
			return err
		}
		if goVersion == "" {
			goVersion = gm.Go
		}
		if gm.Go != goVersion {
			problems = append(problems, fmt.Sprintf("%s: go %s, where the others say go %s", m.Path, gm.Go, goVersion))
		}
		for _, r := range gm.Require {
			if strings.HasPrefix(r.Path, prefix) {
				versions[r.Version] = true
			}
		}
		for _, r := range gm.Replace {
			problems = append(problems, fmt.Sprintf("%s: go.mod replaces %s (dependents ignore replace directives, and go install refuses them)", m.Path, r.Old.Path))
		}
		missing, err := unrequired(m, gm)
		if err != nil {
			return err
		}
		for _, dep := range missing {
			// The workspace resolves it anyway; alone, the module would not build.
			problems = append(problems, fmt.Sprintf("%s imports %s without requiring it", m.Path, dep))
		}
	}
	if len(versions) > 1 {
		var vs []string
		for v := range versions {
			vs = append(vs, v)
		}
		sort.Strings(vs)
		problems = append(problems, "the modules require each other at several versions: "+strings.Join(vs, ", "))
	}
	for v := range versions {
		if checkVersion(v) != nil || v == "v0.0.0" {
			problems = append(problems, fmt.Sprintf("the modules require each other at %s, not a release version", v))
			continue
		}
		for _, m := range mods {
			rel, _ := filepath.Rel(wd, m.Dir)
			want := "./" + strings.TrimPrefix(filepath.ToSlash(rel), ".")
			found := false
			for _, r := range work.Replace {
				if r.Old.Path == m.Path && r.Old.Version == v && filepath.Clean(r.New.Path) == filepath.Clean(want) {
					found = true
				}
			}
			if !found {
				problems = append(problems, fmt.Sprintf("go.work does not replace %s %s => %s", m.Path, v, want))
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n\t"))
	}
	return nil
}

// aloneEnv is the environment of a module built alone against the file proxy at dir: no
// workspace, the proxy first and the usual one for everything else, and no checksum database
// for the repository's own modules, which it has never seen.
func aloneEnv(proxyDir string) []string {
	upstream, _ := exec.Command("go", "env", "GOPROXY").Output()
	nosum, _ := exec.Command("go", "env", "GONOSUMDB").Output()
	nosumdb := prefix
	if s := strings.TrimSpace(string(nosum)); s != "" {
		nosumdb = s + "," + prefix
	}
	return []string{
		"GOWORK=off",
		"GOPROXY=file://" + filepath.ToSlash(proxyDir) + "," + strings.TrimSpace(string(upstream)),
		"GONOSUMDB=" + nosumdb,
	}
}

// ordered returns mods with every module after the modules it requires.
func ordered(mods []module) ([]module, error) {
	byPath := map[string]module{}
	for _, m := range mods {
		byPath[m.Path] = m
	}
	var out []module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(path string, from string) error
	visit = func(path, from string) error {
		m, ok := byPath[path]
		if !ok {
			return fmt.Errorf("%s requires %s, which go.work does not list", from, path)
		}
		switch state[path] {
		case 1:
			return fmt.Errorf("modules require each other in a cycle through %s", path)
		case 2:
			return nil
		}
		state[path] = 1
		for _, d := range m.Deps {
			if err := visit(d, path); err != nil {
				return err
			}
		}
		state[path] = 2
		out = append(out, m)
		return nil
	}
	paths := make([]string, 0, len(mods))
	for _, m := range mods {
		paths = append(paths, m.Path)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := visit(p, p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pack tidies and publishes every module at version into the file proxy at proxyDir.
func pack(version, proxyDir string) error {
	if err := checkVersion(version); err != nil {
		return err
	}
	proxyDir, err := filepath.Abs(proxyDir)
	if err != nil {
		return err
	}
	mods, err := modules()
	if err != nil {
		return err
	}
	if mods, err = ordered(mods); err != nil {
		return err
	}
	env := aloneEnv(proxyDir)
	for _, m := range mods {
		gm, err := readGoMod(m.Dir)
		if err != nil {
			return err
		}
		for _, r := range gm.Require {
			if strings.HasPrefix(r.Path, prefix) && r.Version != version {
				return fmt.Errorf("%s requires %s@%s, not %s: run rewrite first", m.Path, r.Path, r.Version, version)
			}
		}
		if err := runQuiet(m.Dir, env, "go", "mod", "tidy"); err != nil {
			return err
		}
		if err := publish(m, version, proxyDir); err != nil {
			return err
		}
		fmt.Printf("packed %s@%s\n", m.Path, version)
	}
	return nil
}

// publish writes the .info, .mod and .zip of m at version into the proxy, the zip holding
// what the go command's module zips hold: every file of the module's tree except those of
// nested modules and of version control directories.
func publish(m module, version, proxyDir string) error {
	dir := filepath.Join(proxyDir, escape(m.Path), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gomod, err := os.ReadFile(filepath.Join(m.Dir, "go.mod"))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	root := m.Path + "@" + version + "/"
	err = filepath.WalkDir(m.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(m.Dir, path)
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".hg", ".svn", ".bzr":
				return filepath.SkipDir
			}
			if rel != "." {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir // another module
				}
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil // symbolic links and the like are left out, as the go command does
		}
		w, err := zw.Create(root + filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	})
	if err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	info, _ := json.Marshal(struct{ Version, Time string }{version, time.Now().UTC().Format(time.RFC3339)})
	for name, data := range map[string][]byte{version + ".zip": buf.Bytes(), version + ".mod": gomod, version + ".info": info} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	list := filepath.Join(dir, "list")
	old, _ := os.ReadFile(list)
	if !bytes.Contains(append([]byte("\n"), old...), []byte("\n"+version+"\n")) {
		return os.WriteFile(list, append(old, version+"\n"...), 0o644)
	}
	return nil
}

// escape is the proxy protocol's case encoding of a module path: !x for X.
func escape(path string) string {
	var b strings.Builder
	for _, r := range path {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// check builds every module alone against the proxy; with test, it vets and tests it too.
func check(proxyDir string, test bool) error {
	proxyDir, err := filepath.Abs(proxyDir)
	if err != nil {
		return err
	}
	mods, err := modules()
	if err != nil {
		return err
	}
	env := aloneEnv(proxyDir)
	var failed []string
	for _, m := range mods {
		fmt.Printf("== %s (alone)\n", m.Path)
		steps := [][]string{{"build", "./..."}}
		if test {
			steps = append(steps, []string{"vet", "./..."}, []string{"test", "-count=1", "./..."})
		}
		for _, s := range steps {
			if err := run(m.Dir, env, "go", s...); err != nil {
				failed = append(failed, m.Path)
				break
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("these modules do not build or pass alone: %s", strings.Join(failed, ", "))
	}
	return nil
}

// unrequired lists the repository's modules whose packages m imports (tests included) without
// its go.mod requiring them.
func unrequired(m module, gm goMod) ([]string, error) {
	cmd := exec.Command("go", "list", "-deps", "-test", "-f", "{{with .Module}}{{.Path}}{{end}}", "./...")
	cmd.Dir = m.Dir
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: go list -deps: %w", m.Dir, err)
	}
	required := map[string]bool{m.Path: true}
	for _, r := range gm.Require {
		required[r.Path] = true
	}
	var missing []string
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, prefix) && !required[dep] {
			required[dep] = true
			missing = append(missing, dep)
		}
	}
	return missing, nil
}

// runQuiet runs a command and shows its output only when it fails: tidy reports every module
// it looks up.
func runQuiet(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		return fmt.Errorf("%s: %s %s: %w", dir, name, strings.Join(args, " "), err)
	}
	return nil
}

func run(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %s %s: %w", dir, name, strings.Join(args, " "), err)
	}
	return nil
}

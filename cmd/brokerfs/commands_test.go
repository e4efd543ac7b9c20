package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// runCLI runs a command line in-process and returns its exit status, stdout and stderr.
func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestHelpNoRecursion: help of help, in every spelling, is brokerfs's usage; it once recursed
// until the stack overflowed.
func TestHelpNoRecursion(t *testing.T) {
	for _, args := range [][]string{
		{"help"}, {"help", "help"}, {"--help", "--help"}, {"help", "--help"}, {"-h", "help"},
		{"--help", "help", "help"}, {"help", "-h"}, {"-h"},
	} {
		code, out, errs := runCLI(args...)
		if code != 0 || !strings.HasPrefix(out, "brokerfs mounts a catalog") || errs != "" {
			t.Errorf("brokerfs %s: exit %d, stdout %.60q, stderr %q; want 0 and the usage on stdout", strings.Join(args, " "), code, out, errs)
		}
	}
	if code, _, errs := runCLI("help", "frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("help frobnicate: exit %d, %q", code, errs)
	}
}

// TestHelpEachCommand: `help CMD` prints CMD's usage on stdout and does nothing else:
// install-helper once took --help for its DIR.
func TestHelpEachCommand(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, c := range commands {
		args := append([]string{"help"}, strings.Fields(c.name)...)
		code, out, errs := runCLI(args...)
		first, _, _ := strings.Cut(c.name, " ")
		if code != 0 || !strings.Contains(out, "brokerfs "+first) || !strings.Contains(strings.ToLower(out), "usage") || errs != "" {
			t.Errorf("brokerfs %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errs)
		}
	}
	if left, _ := os.ReadDir("."); len(left) != 0 {
		t.Errorf("help left files behind: %v", left)
	}
}

// TestCommandTable: the table, run()'s dispatch and the usage text name the same commands,
// and every command makes its flags with newFlagSet (so completion and the man page see them).
func TestCommandTable(t *testing.T) {
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  brokerfs ([a-z-]+)`).FindAllStringSubmatch(usage, -1) {
		listed[m[1]] = true
	}
	for _, w := range topLevel() {
		if !listed[w] {
			t.Errorf("command %s is not in the usage text", w)
		}
		delete(listed, w)
	}
	for w := range listed {
		t.Errorf("the usage text names %s, which is not in the command table (commands.go)", w)
	}
	for _, c := range commands {
		code, _, errs := runCLI(append(strings.Fields(c.name), "--help")...)
		if code != 0 || strings.Contains(errs, "unknown") {
			t.Errorf("brokerfs %s --help: exit %d, %q", c.name, code, errs)
		}
		if flagsOf(c) == nil {
			t.Errorf("brokerfs %s makes no FlagSet with newFlagSet", c.name)
		}
	}
}

func TestVersion(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/brokerfs/brokerfs", Version: "v0.3.1"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	goLine := "go       " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	want := "brokerfs v0.3.1\ncommit   0123456789abcdef0123456789abcdef01234567 (modified), 2026-12-01T10:00:00Z\n" + goLine
	if got := formatVersion("", bi); got != want {
		t.Errorf("formatVersion =\n%s\nwant\n%s", got, want)
	}
	if got := formatVersion("v1.0.0", bi); !strings.HasPrefix(got, "brokerfs v1.0.0\n") {
		t.Errorf("-X main.version does not win: %s", got)
	}
	bi.Settings = nil
	bi.Main.Version = "(devel)"
	if got := formatVersion("", bi); got != "brokerfs (devel)\ncommit   unknown (built without version control information)\n"+goLine {
		t.Errorf("without VCS: %s", got)
	}
	c1, v1, _ := runCLI("--version")
	c2, v2, _ := runCLI("version")
	if c1 != 0 || c2 != 0 || v1 != v2 || !strings.HasSuffix(v1, goLine) {
		t.Errorf("--version (%d) %q, version (%d) %q", c1, v1, c2, v2)
	}
}

// TestCompletionScripts: each script names every command and every flag, parses in its shell
// (where installed), and completes what a user types (bash and fish, run for real).
func TestCompletionScripts(t *testing.T) {
	tree := completionTree()
	scripts := map[string]string{}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		code, out, errs := runCLI("completion", sh)
		if code != 0 || errs != "" {
			t.Fatalf("completion %s: exit %d, %s", sh, code, errs)
		}
		scripts[sh] = out
		for _, n := range tree {
			for _, w := range strings.Fields(n.path) {
				if !strings.Contains(out, w) {
					t.Errorf("the %s script lacks command %q", sh, w)
				}
			}
			for _, f := range n.flags {
				spellings := flagWords(f)
				if sh == "fish" { // complete ... -l NAME -s X
					spellings = []string{"-l " + f.Name}
					if f.Shorthand != "" {
						spellings = append(spellings, "-s "+f.Shorthand)
					}
				}
				for _, s := range spellings {
					if !strings.Contains(out, s) {
						t.Errorf("the %s script lacks %s of %q", sh, s, n.path)
					}
				}
			}
		}
		path := filepath.Join(t.TempDir(), "brokerfs."+sh)
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath(sh); err != nil {
			t.Logf("%s is not installed: its script is not parsed", sh)
			continue
		}
		if b, err := exec.Command(sh, "-n", path).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", sh, err, b)
		}
		scripts[sh] = path
	}
	// Hidden flags (ls --include) are not offered.
	for _, n := range tree {
		if n.path == "ls" && slices.ContainsFunc(n.flags, func(f *pflag.Flag) bool { return f.Name == "include" }) {
			t.Errorf("completion offers ls --include")
		}
	}

	cases := []struct{ line, want, not string }{
		{"brokerfs ", "cache", ""},
		{"brokerfs ca", "catalogs", "mount"},
		{"brokerfs cache ", "prefetch", "mount"},
		{"brokerfs cache prefetch --no-", "--no-external", "--no-progress"},
		{"brokerfs mount --query {} --li", "--list-ttl", "--json"},
		{"brokerfs ls --", "--json", "--include"},
		{"brokerfs copy --format ", "jsonl", "--format"},
		{"brokerfs sentinel ", "install", "mount"},
		{"brokerfs completion ", "zsh", ""},
	}
	if _, err := exec.LookPath("bash"); err == nil {
		var script strings.Builder
		script.WriteString("source " + scripts["bash"] + "\n")
		for _, c := range cases {
			words := strings.Split(c.line, " ")
			quoted := make([]string, len(words))
			for i, w := range words {
				quoted[i] = shQuote(w)
			}
			script.WriteString("COMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" + itoa(len(words)-1) + "; _brokerfs; echo \"${COMPREPLY[*]}\"\n")
		}
		out, err := exec.Command("bash", "-c", script.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		checkCompletions(t, "bash", cases, strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"))
	}
	if _, err := exec.LookPath("fish"); err == nil {
		var got []string
		for _, c := range cases {
			out, err := exec.Command("fish", "--no-config", "-c", "source "+scripts["fish"]+"; complete -C "+shQuote(c.line)).CombinedOutput()
			if err != nil {
				t.Fatalf("fish: %v\n%s", err, out)
			}
			var words []string
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				w, _, _ := strings.Cut(l, "\t")
				words = append(words, w)
			}
			got = append(got, strings.Join(words, " "))
		}
		checkCompletions(t, "fish", cases, got)
	}
}

func checkCompletions(t *testing.T, sh string, cases []struct{ line, want, not string }, got []string) {
	t.Helper()
	if len(got) != len(cases) {
		t.Fatalf("%s: %d answers for %d cases: %q", sh, len(got), len(cases), got)
	}
	for i, c := range cases {
		words := strings.Fields(got[i])
		if !slices.Contains(words, c.want) || (c.not != "" && slices.Contains(words, c.not)) {
			t.Errorf("%s completes %q to %q; want %s and not %q", sh, c.line, got[i], c.want, c.not)
		}
	}
}

// TestManPage: the page names every command and flag and is valid man(7) roff (groff's
// warnings, where groff is installed).
func TestManPage(t *testing.T) {
	code, page, errs := runCLI("man")
	if code != 0 || errs != "" || !strings.HasPrefix(page, `.\"`) || !strings.Contains(page, "\n.TH BROKERFS 1 ") {
		t.Fatalf("man: exit %d, %q, %.200q", code, errs, page)
	}
	for _, c := range commands {
		if !strings.Contains(page, `.SS "brokerfs `+roff(c.name)) {
			t.Errorf("the page has no section for %s", c.name)
		}
		for _, f := range visibleFlags(flagsOf(c)) {
			if !strings.Contains(page, `\fB\-\-`+roff(f.Name)+`\fR`) {
				t.Errorf("the page lacks --%s of %s", f.Name, c.name)
			}
		}
	}
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff is not installed")
	}
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(page)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("groff -man -ww: %v\n%s", err, out)
	}
}

// TestInstallHelperErrors: a failure says "run as root" only to users who are not.
func TestInstallHelperErrors(t *testing.T) {
	code, _, errs := runCLI("install-helper", filepath.Join(t.TempDir(), "missing"))
	if code != 1 || !strings.Contains(errs, "no such file or directory") || strings.Contains(errs, "run as root") {
		t.Errorf("install-helper into a missing directory: exit %d, %q", code, errs)
	}
	if os.Geteuid() == 0 {
		ro := t.TempDir()
		os.Chmod(ro, 0o555) // root ignores the mode: the link is made
		if code, out, errs := runCLI("install-helper", ro); code != 0 || !strings.Contains(out, helperName) {
			t.Errorf("install-helper as root: exit %d, %q %q", code, out, errs)
		}
	}
	if code, _, _ := runCLI("install-helper", "a", "b"); code != 2 {
		t.Errorf("install-helper a b: exit %d, want 2", code)
	}
}

// TestRejectUnusedFlags: flags that ls and copy would silently ignore are usage errors, and
// their help does not offer them.
func TestRejectUnusedFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"ls", "--include", "det*", dir},
		{"ls", "--exclude=x", dir},
		{"ls", "--cache-max", "1G", dir},
		{"copy", "--include", "x", dir, t.TempDir()},
		{"cache", "clear", "-v"},
	} {
		code, out, errs := runCLI(args...)
		if code != 2 || out != "" || !strings.Contains(errs, "does nothing for") {
			t.Errorf("brokerfs %s: exit %d, %q, %q; want 2 and a usage error", strings.Join(args, " "), code, out, errs)
		}
	}
	_, _, help := runCLI("ls", "--help")
	if strings.Contains(help, "--include") || !strings.Contains(help, "--json") {
		t.Errorf("ls --help:\n%s", help)
	}
}

func TestSwappedMountArgs(t *testing.T) {
	empty, cat, other := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(cat, "run.jsonl"), []byte(`["start", {}]`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(other, "notes.txt"), nil, 0o644)
	// A run file among more names than one batch of the directory read.
	many := t.TempDir()
	for i := range 700 {
		os.WriteFile(filepath.Join(many, fmt.Sprintf("note%03d.txt", i)), nil, 0o644)
	}
	os.WriteFile(filepath.Join(many, "x.msgpack"), nil, 0o644)
	for _, tc := range []struct {
		source, mnt string
		want        bool
	}{
		{empty, cat, true},
		{empty, many, true},
		{empty, "mongodb://db/mds", true},
		{empty, "https://tiled.example/api/v1", true},
		{empty, filepath.Join(cat, "run.jsonl"), true},
		{cat, empty, false},   // the right way round
		{empty, empty, false}, // an empty catalog onto an empty directory: fine
		{empty, other, false}, // a directory of other files
		{"mongodb://db/mds", empty, false},
		{filepath.Join(empty, "missing"), cat, false},
	} {
		if got := swappedMountArgs(tc.source, tc.mnt); got != tc.want {
			t.Errorf("swappedMountArgs(%s, %s) = %v", tc.source, tc.mnt, got)
		}
	}
	code, _, errs := runCLI("mount", empty, cat)
	if code != 2 || !strings.Contains(errs, "arguments swapped?") || !strings.Contains(errs, "usage: brokerfs mount [flags] SOURCE MOUNTPOINT") {
		t.Errorf("mount EMPTY CATALOG: exit %d, %q", code, errs)
	}
}

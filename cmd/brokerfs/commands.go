package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// The command table: what `brokerfs help` lists, and what shell completion (completion.go)
// and the man page (manpage.go) are made from, together with each command's own flags.
//
// A command's flags are its pflag.FlagSet, made where the command runs (newFlagSet): flagsOf
// runs the command with --help and a stderr that keeps the FlagSet, so that the flags shown
// are the flags parsed, never a copy of them. A test checks that every command of run() and
// of the usage text is in this table and has a FlagSet.

// command is one command of the table.
type command struct {
	name    string   // the words that name it: "mount", "cache prefetch"
	args    string   // what follows the command in a synopsis
	summary string   // one line
	words   []string // fixed words its first argument may be (sentinel install|check)
}

var commands = []command{
	{name: "mount", args: "[flags] SOURCE MOUNTPOINT", summary: "mount a catalog in the foreground; Ctrl-C, SIGTERM or umount to stop"},
	{name: "ls", args: "[flags] SOURCE [NAME...]", summary: "list the runs (or those NAMEs name: a scan_id, -N, a uid or uid prefix) without mounting"},
	{name: "catalogs", summary: "the catalogs of your intake / databroker configurations"},
	{name: "sentinel", args: "[flags] install|check URI", summary: "databroker's version sentinel of a MongoDB asset database", words: []string{"install", "check"}},
	{name: "copy", args: "[flags] SOURCE DEST", summary: "copy runs (and, on request, their files) to another store"},
	{name: "cache stat", args: "[flags]", summary: "what the cache of decoded columns holds"},
	{name: "cache clear", args: "[flags]", summary: "remove every cache entry no running mount has open"},
	{name: "cache prefetch", args: "[flags] SOURCE", summary: "decode runs (and read their external frames) into the cache"},
	{name: "demo", args: "[flags] [MOUNTPOINT]", summary: "write a demo catalog and mount it"},
	{name: "install", args: "[flags] [PREFIX]", summary: "copy brokerfs to PREFIX/bin (default /usr/local) and link /sbin/mount.fuse.brokerfs to it"},
	{name: "install-helper", args: "[DIR]", summary: "link DIR/mount.fuse.brokerfs (default /sbin) for mount -t fuse.brokerfs and fstab"},
	{name: "version", summary: "brokerfs's version, commit and Go version (also --version)"},
	{name: "completion", args: "bash|zsh|fish", summary: "a shell completion script for brokerfs", words: []string{"bash", "zsh", "fish"}},
	{name: "man", summary: "the manual page (roff) on stdout: brokerfs man | man -l -"},
	{name: "help", args: "[COMMAND]", summary: "how to use brokerfs, or COMMAND"},
}

func init() {
	// help's argument is a command; a literal here would be an initialization cycle.
	for i := range commands {
		if commands[i].name == "help" {
			commands[i].words = topLevel()
		}
	}
}

// topLevel returns the first words of the commands, each once, in table order.
func topLevel() []string {
	var out []string
	for _, c := range commands {
		w, _, _ := strings.Cut(c.name, " ")
		if len(out) == 0 || out[len(out)-1] != w {
			out = append(out, w)
		}
	}
	return out
}

// subcommands returns the commands whose name is parent followed by one word ("cache" ->
// stat, clear, prefetch); parent "" gives the top-level words.
func subcommands(parent string) []string {
	if parent == "" {
		return topLevel()
	}
	var out []string
	for _, c := range commands {
		if rest, ok := strings.CutPrefix(c.name, parent+" "); ok && !strings.Contains(rest, " ") {
			out = append(out, rest)
		}
	}
	return out
}

// findCommand returns the command named name.
func findCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// flagCapture is the stderr flagsOf runs a command with: it keeps the FlagSets newFlagSet
// makes and discards what is written.
type flagCapture struct{ sets []*pflag.FlagSet }

func (c *flagCapture) Write(p []byte) (int, error) { return len(p), nil }

// newFlagSet makes a command's FlagSet: errors are returned (never os.Exit) and written to
// stderr. Every command makes its flags with it, so that flagsOf sees them.
func newFlagSet(name string, stderr io.Writer) *pflag.FlagSet {
	fl := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fl.SetOutput(stderr)
	if c, ok := stderr.(*flagCapture); ok {
		c.sets = append(c.sets, fl)
	}
	return fl
}

// flagsOf returns the FlagSet command c parses, by running it with --help (which every
// command answers before it does anything else); nil when it makes none.
func flagsOf(c command) *pflag.FlagSet {
	var fc flagCapture
	run(append(strings.Fields(c.name), "--help"), io.Discard, &fc)
	if len(fc.sets) == 0 {
		return nil
	}
	return fc.sets[0]
}

// visibleFlags returns the flags of fl a user may give, sorted by name; nil for a nil fl.
func visibleFlags(fl *pflag.FlagSet) []*pflag.Flag {
	var out []*pflag.Flag
	if fl != nil {
		fl.VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && f.Deprecated == "" {
				out = append(out, f)
			}
		})
	}
	return out
}

// takesValue reports whether flag f needs a value (--query JSON), unlike a switch (--debug).
func takesValue(f *pflag.Flag) bool { return f.NoOptDefVal == "" }

// rejectUnused hides flags that a shared group (catalogFlags) registers on a command that does
// nothing with them, and returns the check to call after Parse: such a flag given is a usage
// error rather than silently ignored.
func rejectUnused(fl *pflag.FlagSet, what string, names ...string) func() error {
	for _, n := range names {
		if fl.Lookup(n) != nil {
			fl.MarkHidden(n)
		}
	}
	return func() error {
		for _, n := range names {
			if fl.Changed(n) {
				return usageError{fmt.Sprintf("--%s does nothing for %s", n, what)}
			}
		}
		return nil
	}
}

// cmdHelp prints the usage of brokerfs, or of the command its arguments name, on stdout.
func cmdHelp(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("help", stderr)
	fl.SetInterspersed(false)
	fl.Usage = func() { fmt.Fprint(stdout, usage) }
	if err := fl.Parse(args); err != nil {
		return err
	}
	topic := fl.Args()
	// help help (and help --help, --help --help) is this usage: never help's help's help...
	if len(topic) == 0 || topic[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if len(subcommands(topic[0])) == 0 && !isCommand(topic[0]) {
		return usageError{fmt.Sprintf("unknown command %q; brokerfs help lists them", topic[0])}
	}
	// The command prints its own usage, where its flags are: on stdout, for `| less`.
	if code := run(append(topic, "--help"), stdout, stdout); code != 0 {
		return fmt.Errorf("no help for %q", strings.Join(topic, " "))
	}
	return nil
}

// isCommand reports whether name is a command of the table.
func isCommand(name string) bool {
	_, ok := findCommand(name)
	return ok
}

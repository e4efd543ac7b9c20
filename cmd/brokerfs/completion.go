package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// brokerfs completion bash|zsh|fish: completion scripts made from the command table and each
// command's FlagSet (commands.go), so that a flag added to a command is completed without
// touching this file.

func cmdCompletion(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("completion", stderr)
	fl.Usage = func() {
		fmt.Fprint(stderr, `Usage: brokerfs completion bash|zsh|fish

Prints a completion script for the shell:
  bash:  source <(brokerfs completion bash)       # or save it as
         ~/.local/share/bash-completion/completions/brokerfs
  zsh:   brokerfs completion zsh > "${fpath[1]}/_brokerfs"   # then restart zsh
  fish:  brokerfs completion fish > ~/.config/fish/completions/brokerfs.fish
`)
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		fl.Usage()
		return usageError{"want bash, zsh or fish"}
	}
	tree := completionTree()
	switch fl.Arg(0) {
	case "bash":
		writeBash(stdout, tree)
	case "zsh":
		writeZsh(stdout, tree)
	case "fish":
		writeFish(stdout, tree)
	default:
		return usageError{fmt.Sprintf("no completion for shell %q: want bash, zsh or fish", fl.Arg(0))}
	}
	return nil
}

// compNode is a command, or a group of commands (cache), as completion sees it.
type compNode struct {
	path    string // "" (brokerfs itself), "mount", "cache", "cache prefetch"
	summary string
	args    string   // the synopsis after the command
	subs    []string // words that name a command below this one
	words   []string // fixed words of the first argument
	flags   []*pflag.Flag
}

// completionTree returns brokerfs itself, then every group and command of the table.
func completionTree() []compNode {
	// -h/--help, which pflag answers on every command without defining it, and --version.
	global := pflag.NewFlagSet("brokerfs", pflag.ContinueOnError)
	global.BoolP("help", "h", false, "show the command's usage and flags")
	global.Bool("version", false, "print the version, commit and Go version")
	helpFlag, version := global.Lookup("help"), global.Lookup("version")
	nodes := []compNode{{path: "", subs: subcommands(""), flags: []*pflag.Flag{helpFlag, version}}}
	seen := map[string]bool{}
	for _, c := range commands {
		if group, _, ok := strings.Cut(c.name, " "); ok && !seen[group] {
			seen[group] = true
			nodes = append(nodes, compNode{path: group, summary: groupSummary(group), subs: subcommands(group), flags: []*pflag.Flag{helpFlag}})
		}
		nodes = append(nodes, compNode{path: c.name, summary: c.summary, args: c.args, words: c.words,
			flags: append([]*pflag.Flag{helpFlag}, visibleFlags(flagsOf(c))...)})
	}
	return nodes
}

// groupSummary describes a group of commands by its members: "cache stat, clear, prefetch".
func groupSummary(group string) string {
	return group + " " + strings.Join(subcommands(group), ", ")
}

// summaryOf returns the summary of the command or group at path.
func summaryOf(tree []compNode, path string) string {
	for _, n := range tree {
		if n.path == path {
			return n.summary
		}
	}
	return ""
}

// valueChoices are the values a flag takes, where they are a fixed set.
var valueChoices = map[string][]string{
	"format": {"msgpack", "jsonl"},
	"layout": {"normalized", "embedded"},
}

// dirFlags take a directory.
var dirFlags = map[string]bool{"cache-dir": true, "dir": true, "copy-files": true}

// repeatable reports whether a flag may be given more than once (its values accumulate).
func repeatable(f *pflag.Flag) bool {
	t := f.Value.Type()
	return strings.HasSuffix(t, "Array") || strings.HasSuffix(t, "Slice")
}

// flagWords returns the spellings of a flag: --name and, if it has one, -x.
func flagWords(f *pflag.Flag) []string {
	w := []string{"--" + f.Name}
	if f.Shorthand != "" {
		w = append(w, "-"+f.Shorthand)
	}
	return w
}

// short returns the first clause of a flag's usage, for the one-line descriptions shells show.
func short(s string) string {
	if i := strings.Index(s, "; "); i > 0 && strings.Count(s[:i], "(") == strings.Count(s[:i], ")") {
		s = s[:i]
	}
	if len(s) > 90 {
		cut := strings.LastIndex(s[:87], " ")
		if cut < 40 {
			cut = 87
		}
		s = s[:cut] + "..."
	}
	return s
}

func flagUsage(f *pflag.Flag) (varname, usage string) {
	varname, usage = pflag.UnquoteUsage(f)
	return varname, short(usage)
}

// bashCase writes a shell case over the nodes' paths, each printing words.
func bashCase(w io.Writer, fn string, tree []compNode, words func(compNode) []string) {
	fmt.Fprintf(w, "%s() {\n    case $1 in\n", fn)
	for _, n := range tree {
		if ws := words(n); len(ws) > 0 {
			fmt.Fprintf(w, "    %s) echo %s ;;\n", shQuote(n.path), shQuote(strings.Join(ws, " ")))
		}
	}
	fmt.Fprintf(w, "    esac\n}\n\n")
}

// shQuote quotes s for sh and bash in single quotes.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func writeBash(w io.Writer, tree []compNode) {
	fmt.Fprint(w, `# bash completion for brokerfs; generated by "brokerfs completion bash" from its commands
# and flags. Load it with: source <(brokerfs completion bash)
# or save it as ~/.local/share/bash-completion/completions/brokerfs.

`)
	bashCase(w, "_brokerfs_subs", tree, func(n compNode) []string { return n.subs })
	bashCase(w, "_brokerfs_words", tree, func(n compNode) []string { return n.words })
	bashCase(w, "_brokerfs_flags", tree, func(n compNode) []string {
		var out []string
		for _, f := range n.flags {
			out = append(out, flagWords(f)...)
		}
		return out
	})
	bashCase(w, "_brokerfs_valued", tree, func(n compNode) []string {
		var out []string
		for _, f := range n.flags {
			if takesValue(f) {
				out = append(out, flagWords(f)...)
			}
		}
		return out
	})
	var choices, dirs []string
	for _, name := range slices.Sorted(maps.Keys(valueChoices)) {
		choices = append(choices, fmt.Sprintf("    --%s) COMPREPLY=($(compgen -W %s -- \"$cur\")) ;;\n", name, shQuote(strings.Join(valueChoices[name], " "))))
	}
	for _, name := range slices.Sorted(maps.Keys(dirFlags)) {
		dirs = append(dirs, "--"+name)
	}
	fmt.Fprintf(w, `_brokerfs() {
    local cur=${COMP_WORDS[COMP_CWORD]} path= npos=0 skip= i w choices
    COMPREPLY=()
    # Walk the words before the cursor: command words extend the path until the first
    # argument; a flag that takes a value makes the next word its value.
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ -n $skip ]]; then
            skip=
            continue
        fi
        case $w in
        -*=*) ;;
        -*) [[ " $(_brokerfs_valued "$path") " == *" $w "* ]] && skip=1 ;;
        *)
            if ((npos == 0)) && [[ " $(_brokerfs_subs "$path") " == *" $w "* ]]; then
                path=${path:+$path }$w
            else
                npos=$((npos + 1))
            fi
            ;;
        esac
    done
    if [[ -n $skip ]]; then
        case ${COMP_WORDS[COMP_CWORD - 1]} in
%s    %s) COMPREPLY=($(compgen -d -- "$cur")) ;;
        esac
        return 0
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_brokerfs_flags "$path")" -- "$cur"))
        return 0
    fi
    if ((npos == 0)); then
        choices="$(_brokerfs_subs "$path") $(_brokerfs_words "$path")"
        if [[ -n ${choices// /} ]]; then
            COMPREPLY=($(compgen -W "$choices" -- "$cur"))
        fi
    fi
    return 0
}

complete -o default -F _brokerfs brokerfs
`, strings.Join(choices, ""), strings.Join(dirs, "|"))
}

// zshFunc is the name of the zsh function completing the node at path.
func zshFunc(path string) string {
	if path == "" {
		return "_brokerfs"
	}
	return "_brokerfs_" + strings.NewReplacer(" ", "_", "-", "_").Replace(path)
}

// zshDesc makes a description safe inside an _arguments spec's [...] in single quotes:
// brackets become parentheses, backslashes go, colons are escaped.
func zshDesc(s string) string {
	return strings.NewReplacer(`\`, ``, `[`, `(`, `]`, `)`, `:`, `\:`, `'`, `'\''`).Replace(s)
}

func writeZsh(w io.Writer, tree []compNode) {
	fmt.Fprint(w, `#compdef brokerfs
# zsh completion for brokerfs; generated by "brokerfs completion zsh" from its commands and
# flags. Save it as _brokerfs in a directory of $fpath (brokerfs completion zsh >
# "${fpath[1]}/_brokerfs") and restart zsh.

`)
	for _, n := range tree {
		fmt.Fprintf(w, "%s() {\n", zshFunc(n.path))
		if len(n.subs) > 0 {
			fmt.Fprintf(w, "    local curcontext=$curcontext state state_descr line\n    typeset -A opt_args\n")
			fmt.Fprintf(w, "    _arguments -C -S \\\n")
			for _, f := range n.flags {
				fmt.Fprintf(w, "        %s \\\n", zshFlagSpec(f))
			}
			fmt.Fprintf(w, "        '1:command:->command' \\\n        '*::argument:->argument'\n")
			fmt.Fprintf(w, "    case $state in\n    command)\n        local -a cmds=(\n")
			for _, s := range n.subs {
				sub := strings.TrimPrefix(n.path+" "+s, " ")
				fmt.Fprintf(w, "            %s\n", shQuote(s+":"+summaryOf(tree, sub)))
			}
			fmt.Fprintf(w, "        )\n        _describe -t commands 'brokerfs command' cmds\n        ;;\n    argument)\n        case $words[1] in\n")
			for _, s := range n.subs {
				sub := strings.TrimPrefix(n.path+" "+s, " ")
				fmt.Fprintf(w, "        %s) %s ;;\n", shQuote(s), zshFunc(sub))
			}
			fmt.Fprintf(w, "        esac\n        ;;\n    esac\n}\n\n")
			continue
		}
		fmt.Fprintf(w, "    _arguments -S \\\n")
		for _, f := range n.flags {
			fmt.Fprintf(w, "        %s \\\n", zshFlagSpec(f))
		}
		if len(n.words) > 0 {
			fmt.Fprintf(w, "        '1:argument:(%s)' \\\n", strings.Join(n.words, " "))
		}
		fmt.Fprintf(w, "        '*:file:_files'\n}\n\n")
	}
	fmt.Fprintf(w, "if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n    _brokerfs \"$@\"\nelse\n    compdef _brokerfs brokerfs\nfi\n")
}

// zshFlagSpec is the _arguments spec of one flag, e.g.
// '(-o --option)'{-o+,--option=}'[FUSE mount option]:string:'.
func zshFlagSpec(f *pflag.Flag) string {
	varname, usage := flagUsage(f)
	action := ""
	if takesValue(f) {
		if varname == "" {
			varname = "value"
		}
		switch {
		case valueChoices[f.Name] != nil:
			action = ":" + varname + ":(" + strings.Join(valueChoices[f.Name], " ") + ")"
		case dirFlags[f.Name]:
			action = ":" + varname + ":_files -/"
		case strings.HasPrefix(f.Value.Type(), "string"):
			action = ":" + varname + ":_files"
		default: // a number, a duration: a message, no completions
			action = ":" + varname + ": "
		}
	}
	desc := "'[" + zshDesc(usage) + "]" + strings.ReplaceAll(action, "'", `'\''`) + "'"
	long, shortForm := "--"+f.Name, "-"+f.Shorthand
	if takesValue(f) {
		long += "="
		shortForm += "+"
	}
	prefix := ""
	if repeatable(f) {
		prefix = "'*'"
	}
	if f.Shorthand == "" {
		return prefix + long + desc
	}
	if prefix == "" {
		prefix = "'(-" + f.Shorthand + " --" + f.Name + ")'"
	}
	return prefix + "{" + shortForm + "," + long + "}" + desc
}

// fishQuote quotes s in fish's single quotes.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// fishCond is the condition under which the node at path is the command being completed.
func fishCond(tree []compNode, path string) string {
	if path == "" {
		return "__fish_use_subcommand"
	}
	words := strings.Fields(path)
	var conds []string
	for _, w := range words {
		conds = append(conds, "__fish_seen_subcommand_from "+w)
	}
	for _, n := range tree {
		if n.path == path && len(n.subs) > 0 {
			conds = append(conds, "not __fish_seen_subcommand_from "+strings.Join(n.subs, " "))
		}
	}
	return strings.Join(conds, "; and ")
}

func writeFish(w io.Writer, tree []compNode) {
	fmt.Fprint(w, `# fish completion for brokerfs; generated by "brokerfs completion fish" from its commands and
# flags. Save it as ~/.config/fish/completions/brokerfs.fish, or: brokerfs completion fish | source

`)
	for _, n := range tree {
		cond := fishQuote(fishCond(tree, n.path))
		if n.path != "" {
			fmt.Fprintf(w, "\n# brokerfs %s\n", n.path)
		}
		for _, s := range n.subs {
			sub := strings.TrimPrefix(n.path+" "+s, " ")
			fmt.Fprintf(w, "complete -c brokerfs -n %s -f -a %s -d %s\n", cond, fishQuote(s), fishQuote(summaryOf(tree, sub)))
		}
		if len(n.words) > 0 {
			wcond := fishQuote(fishCond(tree, n.path) + "; and not __fish_seen_subcommand_from " + strings.Join(n.words, " "))
			fmt.Fprintf(w, "complete -c brokerfs -n %s -f -a %s\n", wcond, fishQuote(strings.Join(n.words, " ")))
		}
		for _, f := range n.flags {
			_, usage := flagUsage(f)
			line := "complete -c brokerfs -n " + cond + " -l " + f.Name
			if f.Shorthand != "" {
				line += " -s " + f.Shorthand
			}
			switch {
			case !takesValue(f):
			case valueChoices[f.Name] != nil:
				line += " -x -a " + fishQuote(strings.Join(valueChoices[f.Name], " "))
			case dirFlags[f.Name]:
				line += " -x -a '(__fish_complete_directories)'"
			default:
				line += " -r"
			}
			fmt.Fprintf(w, "%s -d %s\n", line, fishQuote(usage))
		}
	}
}

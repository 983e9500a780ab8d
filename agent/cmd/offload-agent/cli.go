package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/photosleeve/offload/agent"
)

// The one way every subcommand parses its flags: see the comment at the top
// of flags.go.

// subcommands are the commands written as func(args, getenv, stdout,
// stderr) int; run and once are main's own. A new one is added here.
var subcommands = map[string]func(args []string, getenv func(string) string, stdout, stderr io.Writer) int{
	"status": statusCommand,
	"audit":  auditCommand,
	"init":   initCommand,
	"doctor": doctorCommand,
	"erase":  eraseCommand,
	"prune":  pruneCommand,
}

// commandNames are every command's name, sorted.
func commandNames() []string {
	names := []string{"run", "once", "version", "help"}
	for n := range subcommands {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// commandSuggestions are the candidates for a mistyped command.
func commandSuggestions() map[string]string {
	m := map[string]string{}
	for _, n := range commandNames() {
		m[n] = n
	}
	return m
}

// dispatch runs every command but run and once, and answers help, version
// and unknown commands; handled is false for run and once, which main goes
// on with.
func dispatch(args []string, getenv func(string) string, stdout, stderr io.Writer) (code int, handled bool) {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "offload-agent: no command: want one of %s (see offload-agent help)\n", strings.Join(commandNames(), ", "))
		return 2, true
	}
	cmd := args[0]
	switch cmd {
	case "run", "once":
		return 0, false
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionLine(agent.ReadBuild()))
		return 0, true
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return helpFor(args[1], stdout, stderr), true
		}
		fmt.Fprint(stdout, overview)
		fmt.Fprint(stdout, "Flags of run and once; offload-agent help COMMAND shows each command's own.\n\n")
		c := newCommandLine("run")
		c.fs.SetOutput(stdout)
		c.fs.Usage()
		return 0, true
	}
	if sub, ok := subcommands[cmd]; ok {
		return sub(args[1:], getenv, stdout, stderr), true
	}
	fmt.Fprintf(stderr, "offload-agent: unknown command %q%s (see offload-agent help)\n", cmd, didYouMean(cmd, commandSuggestions(), ""))
	return 2, true
}

// helpFor prints cmd's own help, as "offload-agent cmd --help" does.
func helpFor(cmd string, stdout, stderr io.Writer) int {
	switch cmd {
	case "run", "once":
		c := newCommandLine(cmd)
		c.fs.SetOutput(stdout)
		c.fs.Usage()
		return 0
	case "version":
		fmt.Fprint(stdout, "offload-agent version\n\n  The version of this build: the git tag or a pseudo-version of the commit,\n  the revision and the Go version (also offload-agent --version).\n")
		return 0
	case "help":
		fmt.Fprint(stdout, overview)
		return 0
	}
	if sub, ok := subcommands[cmd]; ok {
		return sub([]string{"--help"}, func(string) string { return "" }, stdout, stderr)
	}
	fmt.Fprintf(stderr, "offload-agent help: unknown command %q%s\n", cmd, didYouMean(cmd, commandSuggestions(), ""))
	return 2
}

// newFlagSet makes the flag set of "offload-agent name", whose help is head
// (the synopsis and what the command does) and then its flags.
func newFlagSet(name, head string) *flag.FlagSet {
	fs := flag.NewFlagSet("offload-agent "+name, flag.ContinueOnError)
	fs.Usage = func() { writeUsage(fs, head, nil) }
	return fs
}

// parseCommand parses args with fs, the same way for every subcommand
// (see the top of flags.go): help on stdout, one-line usage errors on
// stderr with the closest flag for an unknown one. ok false: the command
// returns code (0 after help, 2 after a usage error).
func parseCommand(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (ok bool, code int) {
	return parseCommandArgs(fs, args, false, stdout, stderr)
}

// parseCommandArgs is parseCommand for a command that, with operands
// true, takes arguments after its flags (fs.Args()).
func parseCommandArgs(fs *flag.FlagSet, args []string, operands bool, stdout, stderr io.Writer) (ok bool, code int) {
	fs.SetOutput(io.Discard) // the flag package would print the usage on every error
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return false, 0
	case err != nil:
		fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), describeParseError(fs, err))
		return false, 2
	case fs.NArg() > 0 && !operands:
		fmt.Fprintf(stderr, "%s: unexpected arguments %q (see %s --help)\n", fs.Name(), fs.Args(), fs.Name())
		return false, 2
	}
	return true, 0
}

// describeParseError says a flag package error in this command line's
// words: flags with two dashes, the value after the flag, and for an unknown
// flag the closest one. The flag package's errors are plain strings, so this
// reads its five fixed forms; any other is passed on as it is.
func describeParseError(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		// A typo of an old spelling suggests the new one.
		names := map[string]string{}
		fs.VisitAll(func(f *flag.Flag) {
			names[f.Name] = f.Name
			if use, ok := strings.CutPrefix(f.Usage, "deprecated: use --"); ok {
				names[f.Name] = use
			}
		})
		return fmt.Sprintf("unknown flag --%s%s (see %s --help)", name, didYouMean(name, names, "--"), fs.Name())
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Sprintf("--%s needs a value", name)
	}
	var value, name, cause string
	if n, _ := fmt.Sscanf(msg, "invalid value %q for flag -%s", &value, &name); n == 2 {
		name = strings.TrimSuffix(name, ":")
		_, cause, _ = strings.Cut(msg, " for flag -"+name+": ")
		return fmt.Sprintf("--%s %s: %s", name, shown(value), cause)
	}
	if n, _ := fmt.Sscanf(msg, "invalid boolean value %q for -%s", &value, &name); n == 2 {
		return fmt.Sprintf("--%s %s: want true or false", strings.TrimSuffix(name, ":"), shown(value))
	}
	return msg
}

// didYouMean is ": did you mean PREFIX+x?" for the candidate closest to
// typed, when one is close enough to be a typo of it (at most two edits, a
// swap of neighbours counting one, or a prefix of it), else "". candidates
// maps each name to the one to suggest for it (itself, or an old
// spelling's new name).
func didYouMean(typed string, candidates map[string]string, prefix string) string {
	best, bestD := "", 3
	for c, suggest := range candidates {
		d := editDistance(typed, c)
		if len(typed) >= 3 && strings.HasPrefix(c, typed) && d > 2 {
			d = 2 // a prefix: "--buck" for --bucket
		}
		if d < bestD || d == bestD && suggest < best {
			best, bestD = suggest, d
		}
	}
	if best == "" || bestD >= len(typed) {
		return ""
	}
	return fmt.Sprintf(": did you mean %s%s?", prefix, best)
}

// editDistance is the optimal string alignment distance of a and b: the
// insertions, deletions, substitutions and swaps of neighbouring bytes
// that turn one into the other.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// writeUsage prints a command's help on fs's output: head, then each flag
// (in order, or by name when order is nil) with its usage, indented, and a
// line naming the deprecated spellings, which the list leaves out.
func writeUsage(fs *flag.FlagSet, head string, order []string) {
	w := fs.Output()
	fmt.Fprint(w, head)
	var flags []*flag.Flag
	var deprecated []string
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Usage, "internal: ") {
			return // a flag the command passes to itself, not a person's
		}
		if use, ok := strings.CutPrefix(f.Usage, "deprecated: "); ok {
			deprecated = append(deprecated, fmt.Sprintf("--%s (%s)", f.Name, use))
			return
		}
		flags = append(flags, f)
	})
	if order != nil {
		rank := map[string]int{}
		for i, n := range order {
			rank[n] = i + 1 // the command's own flags, not in order, go first
		}
		slices.SortStableFunc(flags, func(a, b *flag.Flag) int { return rank[a.Name] - rank[b.Name] })
	}
	if len(flags) > 0 {
		fmt.Fprint(w, "\nflags (each setting also read from the environment variable shown; a flag wins):\n")
	}
	for _, f := range flags {
		lines := strings.Split(f.Usage, "\n")
		if f.DefValue != "" && f.DefValue != "false" && !strings.Contains(f.Usage, "default") {
			lines = append(lines, "default "+f.DefValue)
		}
		fmt.Fprintf(w, "  --%-20s %s\n", f.Name, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "  %-22s %s\n", "", l)
		}
	}
	if len(deprecated) > 0 {
		slices.Sort(deprecated)
		line := "\ndeprecated, still accepted with a warning: " + strings.Join(deprecated, ", ")
		var envs []string
		for _, s := range settings {
			for old, name := range renamedEnv {
				if name == s.env && fs.Lookup(s.name) != nil {
					envs = append(envs, fmt.Sprintf("%s (use %s)", old, name))
				}
			}
		}
		if len(envs) > 0 {
			slices.Sort(envs)
			line += "; " + strings.Join(envs, ", ")
		}
		fmt.Fprintln(w, line)
	}
}

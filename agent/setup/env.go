package setup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// KV is one KEY=VALUE assignment init manages in the env file.
type KV struct{ Key, Value string }

// EnvConflict is a managed key that already holds another value: a
// person's edit, or a run with other flags. init does not overwrite it
// without --force.
type EnvConflict struct {
	Key, Have, Want string
}

// EnvMerge is what MergeEnv decided.
type EnvMerge struct {
	Out       []byte        // the file to write
	Added     []string      // managed keys that were absent (or empty)
	Changed   []EnvConflict // managed keys whose value changes (only with force)
	Conflicts []EnvConflict // managed keys that differ, refused without force
}

// MergeEnv puts the managed assignments into an env file's existing text
// (nil for a new file) and leaves everything else as it was: comments,
// blank lines, keys init does not manage, their order. A managed key that
// is absent, or present with an empty value (a package's placeholder), is
// set; one that holds another value is a conflict, changed only with
// force. Every assignment of a key is updated, since systemd takes the
// last. Values are compared after systemd's unquoting of a whole-value
// "..." or '...'.
func MergeEnv(existing []byte, managed []KV, force bool) EnvMerge {
	var m EnvMerge
	var lines []string
	if len(existing) > 0 {
		lines = strings.Split(strings.TrimSuffix(string(existing), "\n"), "\n")
	}
	want := make(map[string]string, len(managed))
	for _, kv := range managed {
		want[kv.Key] = kv.Value
	}
	seen := map[string]bool{}
	for i, line := range lines {
		key, value, ok := envAssignment(line)
		w, managedKey := want[key]
		if !ok || !managedKey {
			continue
		}
		first := !seen[key]
		seen[key] = true
		switch {
		case value == w:
			continue
		case value == "":
			if first {
				m.Added = append(m.Added, key)
			}
		case force:
			if first {
				m.Changed = append(m.Changed, EnvConflict{key, value, w})
			}
		default:
			if first {
				m.Conflicts = append(m.Conflicts, EnvConflict{key, value, w})
			}
			continue
		}
		lines[i] = key + "=" + w
	}
	var add []string
	for _, kv := range managed {
		if !seen[kv.Key] {
			add = append(add, kv.Key+"="+kv.Value)
			m.Added = append(m.Added, kv.Key)
		}
	}
	if len(add) > 0 {
		if len(lines) == 0 {
			lines = append(lines, envHeader...)
		} else if lines[len(lines)-1] != "" {
			lines = append(lines, "")
		}
		lines = append(lines, add...)
	}
	if len(lines) > 0 {
		m.Out = []byte(strings.Join(lines, "\n") + "\n")
	}
	return m
}

var envHeader = []string{
	"# offload-agent's settings (systemd EnvironmentFile format: KEY=VALUE lines).",
	"# Written by offload-agent init, which keeps keys it does not manage and",
	"# refuses to change a value a person set unless given --force.",
	"# See offload-agent help for every setting.",
}

// ParseEnvFile reads systemd's EnvironmentFile= format (systemd.exec(5))
// as the unit does: KEY=VALUE lines, blank lines and lines starting with #
// or ; ignored, a line ending in a backslash continued on the next, and
// each assignment read by parseAssignment. The last assignment of a key
// wins. A line that is not an assignment is an error naming it.
func ParseEnvFile(b []byte) (map[string]string, error) {
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	n, pending := 0, ""
	for sc.Scan() {
		n++
		line := pending + sc.Text()
		pending = ""
		if strings.HasSuffix(line, `\`) {
			pending = strings.TrimSuffix(line, `\`)
			continue
		}
		key, value, ok, err := parseAssignment(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if ok {
			env[key] = value
		}
	}
	return env, sc.Err()
}

// parseAssignment reads one logical line of the EnvironmentFile format:
// comments (# or ;) and blank lines are no assignment (ok false);
// otherwise KEY=VALUE, blanks around the key and the value dropped, and a
// value wholly inside "..." (with \" and \\ escapes) or '...' unquoted.
func parseAssignment(line string) (key, value string, ok bool, err error) {
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' || t[0] == ';' {
		return "", "", false, nil
	}
	key, value, found := strings.Cut(t, "=")
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	if !found || key == "" || strings.ContainsAny(key, " \t") {
		return "", "", false, errors.New("want KEY=VALUE")
	}
	if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
		if value[0] == '"' {
			value = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(value[1 : len(value)-1])
		} else {
			value = value[1 : len(value)-1]
		}
	}
	return key, value, true, nil
}

// envAssignment is parseAssignment for the one physical line init looks
// at: a continued line (ending in a backslash) and a line that is not an
// assignment are none, and init leaves them as they are.
func envAssignment(line string) (key, value string, ok bool) {
	if strings.HasSuffix(strings.TrimSpace(line), `\`) {
		return "", "", false
	}
	key, value, ok, err := parseAssignment(line)
	return key, value, ok && err == nil
}

// describe renders a conflict for a person: the key, what the file says,
// what init would write.
func (c EnvConflict) String() string {
	return fmt.Sprintf("%s: the file has %q, init would write %q", c.Key, c.Have, c.Want)
}

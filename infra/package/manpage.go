package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// manPage is offload-agent(1), made from what "offload-agent help" prints,
// so it cannot fall behind the flags. help is the output of the binary
// being packaged (or of a build of the same source for this machine when
// the package is for another architecture).
func manPage(help []byte, version string, when time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, ".TH OFFLOAD-AGENT 1 %q %q \"offload\"\n", when.Format("2006-01-02"), "offload "+version)
	b.WriteString(".SH NAME\noffload-agent \\- move a web site's uploaded originals to S3, keeping their URLs\n")
	b.WriteString(".SH SYNOPSIS\n.B offload-agent\n.I command\n.RI [ flags ]\n")
	b.WriteString(".SH DESCRIPTION\nWhat\n.B offload-agent help\nprints:\n.PP\n.nf\n")
	for _, line := range strings.Split(strings.TrimRight(string(help), "\n"), "\n") {
		// Roff: a backslash is an escape, and a line starting with a dot
		// or an apostrophe is a request.
		line = strings.ReplaceAll(line, `\`, `\e`)
		if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
			line = `\&` + line
		}
		b.WriteString(line + "\n")
	}
	b.WriteString(".fi\n")
	b.WriteString(".SH FILES\n" +
		".TP\n.I /etc/offload/agent.env\nthe service's settings (systemd EnvironmentFile), root:offload 0640\n" +
		".TP\n.I /lib/systemd/system/offload\\-agent.service\nthe systemd unit\n" +
		".TP\n.I /usr/share/offload/\nthe web servers' fallback configuration (lighttpd, nginx, apache)\n" +
		".TP\n.I /usr/share/doc/offload/README.Debian\nhow the package is installed and configured\n")
	b.WriteString(".SH SEE ALSO\n.BR systemctl (1),\n.BR lighty\\-enable\\-mod (8)\n")
	return b.Bytes()
}

// helpText runs "offload-agent help" and returns what it prints (on
// stdout or stderr).
func helpText(ctx context.Context, bin string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, bin, "help").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s help: %v\n%s", bin, err, out)
	}
	return out, nil
}

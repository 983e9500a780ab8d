package main

import (
	"bytes"
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
)

// termSafe writes text for a terminal with every control character but the
// newline made visible (\x1b, \u009b), as an invalid UTF-8 byte is: what
// it prints carries file names, which whoever writes in the watch folder
// chooses (a local user, or a web site's visitor where the back-end keeps
// upload names), and an escape sequence in one would otherwise reach the
// terminal of the root who runs "offload-agent status".
type termSafe struct{ w io.Writer }

func (t termSafe) Write(p []byte) (int, error) {
	var b bytes.Buffer
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, p[i])
		case r == '\n' || !unicode.IsControl(r):
			b.Write(p[i : i+n])
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	if _, err := t.w.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Package hotcache keeps the web host's most requested offloaded originals in
// a local cache folder, learning what is requested from the web server's
// access log.
package hotcache

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Request is one line of a web server's access log, as far as the cache
// needs it.
type Request struct {
	// Method is the request method as logged, e.g. "GET".
	Method string
	// Target is the request target as the client sent it: path and query
	// with their percent-encoding kept, e.g. "/static/a%20b.jpg?x=1". The
	// log's own escapes (\xHH, \", \\) are undone, so a byte the server
	// logged as \xE5 is the byte 0xE5 here. For an absolute-form target
	// ("http://host/static/a.jpg") only the path and query are kept.
	Target string
	// Status is the final status, e.g. 302 or 200.
	Status int
	// Time is the time the line carries; zero if it could not be parsed.
	Time time.Time
}

// maxLineLength is the longest line ParseLine looks at. The request line
// of every server we read is bounded well below this (nginx's default
// large_client_header_buffers is 8 KiB, Apache's LimitRequestLine 8190
// bytes) and escaping at most quadruples a byte, so a longer line is
// hostile or not an access log; refusing it bounds the work per line.
const maxLineLength = 16 << 10

// timeLayout is the %t / $time_local format shared by Apache, nginx and
// lighttpd.
const timeLayout = "02/Jan/2006:15:04:05 -0700"

// ParseLine parses one line of the Common Log Format or the Combined Log
// Format (the line without its newline), as written by Apache, nginx and
// lighttpd in their default formats.
//
// It does not depend on the fields before the time: it finds the
// bracketed time followed by the quoted request line, then the status
// after it. That works for lighttpd's default, whose second field is the
// host name, and for any number of leading fields, because all three
// servers escape a double quote in those fields, so `] "` first occurs
// where the time ends. The escapes inside the request line (nginx's
// \xHH, Apache's and lighttpd's \" \\ \xhh \n and the like, lighttpd's
// JSON \u00HH) are undone before the line is split into method, target
// and protocol.
//
// A line longer than 16 KiB, a request line that is not three parts
// (e.g. "-" or an HTTP/0.9 "GET /x"), a target that is not a path (e.g.
// "*" or CONNECT's "host:443") and a status that is not a number from
// 100 to 599 are errors. A time that does not parse is not: Time is zero.
func ParseLine(line []byte) (Request, error) {
	if len(line) > maxLineLength {
		return Request{}, fmt.Errorf("line of %d bytes is longer than %d", len(line), maxLineLength)
	}
	line = bytes.TrimSuffix(line, []byte("\r"))

	end := bytes.Index(line, []byte(`] "`))
	if end < 0 {
		return Request{}, errors.New("no [time] followed by a quoted request line")
	}
	open := bytes.LastIndexByte(line[:end], '[')
	if open < 0 {
		return Request{}, errors.New("no [time] followed by a quoted request line")
	}
	var req Request
	if t, err := time.Parse(timeLayout, string(line[open+1:end])); err == nil {
		req.Time = t
	}

	raw, status, err := requestAndStatus(line[end+len(`] "`):])
	if err != nil {
		return Request{}, err
	}
	req.Status = status

	reqLine := unescape(raw)
	method, rest, ok := bytes.Cut(reqLine, []byte(" "))
	sp := bytes.LastIndexByte(rest, ' ')
	if !ok || sp < 0 {
		return Request{}, fmt.Errorf("request line %q is not method, target and protocol", reqLine)
	}
	target, proto := rest[:sp], rest[sp+1:]
	if !isToken(method) {
		return Request{}, fmt.Errorf("request method %q is not a token", method)
	}
	if !bytes.HasPrefix(proto, []byte("HTTP/")) {
		return Request{}, fmt.Errorf("request protocol %q is not HTTP", proto)
	}
	path, ok := originForm(target)
	if !ok {
		return Request{}, fmt.Errorf("request target %q is not a path", target)
	}
	req.Method = string(method)
	req.Target = string(path)
	return req, nil
}

// requestAndStatus splits s, the rest of a line after the request line's
// opening quote, into the request line as logged and the status after
// it. The request line ends at the first unescaped quote that is followed
// by a status; nginx with escape=none leaves quotes in the target raw,
// and this way they do not end it early.
func requestAndStatus(s []byte) (raw []byte, status int, err error) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // the escaped byte cannot end the request line
		case '"':
			tok := statusToken(s[i+1:])
			if code, ok := parseStatus(tok); ok {
				return s[:i], code, nil
			}
			if err == nil {
				err = fmt.Errorf("status %q after the request line is not an HTTP status", tok)
			}
		}
	}
	if err == nil {
		err = errors.New("request line has no closing quote")
	}
	return nil, 0, err
}

// statusToken returns the field after the space that follows a closing
// quote, or nil if no space follows it.
func statusToken(s []byte) []byte {
	if len(s) == 0 || s[0] != ' ' {
		return nil
	}
	s = s[1:]
	if i := bytes.IndexByte(s, ' '); i >= 0 {
		s = s[:i]
	}
	return s
}

// parseStatus accepts exactly three digits from 100 to 599, the range
// RFC 9110 gives status codes; "-" (nginx and Apache for a request that
// got no response) is not one.
func parseStatus(tok []byte) (int, bool) {
	if len(tok) != 3 {
		return 0, false
	}
	n := 0
	for _, c := range tok {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n >= 100 && n <= 599
}

// unescape undoes the escapes the servers write inside quoted fields:
// \xHH (nginx upper case, Apache lower case, lighttpd upper case), \" and
// \\ (Apache, lighttpd), \n \t and the other C whitespace escapes
// (Apache, lighttpd) and \u00HH (lighttpd's and nginx's JSON escaping).
// A backslash that starts none of these is kept as it is.
func unescape(s []byte) []byte {
	if bytes.IndexByte(s, '\\') < 0 {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			out = append(out, c)
			continue
		}
		switch e := s[i+1]; e {
		case '"', '\\':
			out = append(out, e)
			i++
		case 'a', 'b', 't', 'n', 'v', 'f', 'r':
			out = append(out, cEscapes[e])
			i++
		case 'x':
			if b, ok := hexByte(s[i+2:]); ok {
				out = append(out, b)
				i += 3
			} else {
				out = append(out, c)
			}
		case 'u':
			if rest := s[i+2:]; len(rest) >= 4 && rest[0] == '0' && rest[1] == '0' {
				if b, ok := hexByte(rest[2:]); ok {
					out = append(out, b)
					i += 5
					continue
				}
			}
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	return out
}

// cEscapes maps the letter of a C whitespace escape to its byte.
var cEscapes = map[byte]byte{'a': '\a', 'b': '\b', 't': '\t', 'n': '\n', 'v': '\v', 'f': '\f', 'r': '\r'}

// hexByte decodes the two hex digits at the start of s.
func hexByte(s []byte) (byte, bool) {
	if len(s) < 2 {
		return 0, false
	}
	hi, ok1 := hexDigit(s[0])
	lo, ok2 := hexDigit(s[1])
	return hi<<4 | lo, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isToken reports whether s is an RFC 9110 token, which a method is.
func isToken(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0:
		default:
			return false
		}
	}
	return true
}

// originForm returns the path and query of target: target itself if it
// starts with "/", the part from the first "/" after the authority for an
// absolute-form target (RFC 9112 section 3.2.2), "/" prefixed when the
// authority is followed directly by a query or by nothing, since an empty
// path there means "/".
func originForm(target []byte) ([]byte, bool) {
	if len(target) > 0 && target[0] == '/' {
		return target, true
	}
	scheme, rest, ok := bytes.Cut(target, []byte("://"))
	if !ok || !isScheme(scheme) {
		return nil, false
	}
	i := bytes.IndexAny(rest, "/?")
	switch {
	case i < 0:
		return []byte("/"), true
	case rest[i] == '/':
		return rest[i:], true
	default:
		return append([]byte("/"), rest[i:]...), true
	}
}

// isScheme reports whether s is a URI scheme (RFC 3986 section 3.1).
func isScheme(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for i, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

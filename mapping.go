package offload

import (
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the naming contract.
const (
	// MaxKeyBytes is S3's limit on an object key (UTF-8 bytes).
	MaxKeyBytes = 1024

	// maxSegmentBytes is NAME_MAX on Linux file systems: no longer file or
	// folder name can exist in the watch folder, so a longer URL segment can
	// only be an attack or a mistake.
	maxSegmentBytes = 255
)

// Mapping is the one rule for naming an original in the three places it lives:
// as a file under the watch folder ("2024/cat.jpg"), as a URL path on the web
// site ("/static/2024/cat.jpg") and as an S3 object key ("original/2024/cat.jpg").
//
// A name is a slash-separated relative path of one or more segments. Refused,
// never cleaned: empty input, absolute paths, empty, "." or ".." segments
// (so no "//" and no trailing slash), backslashes, control characters
// (C0, DEL, C1), the non-characters U+FFFE and U+FFFF (XML, which S3 listings
// use, cannot carry them), invalid UTF-8, segments over 255 bytes and keys
// over 1024 bytes. On the URL side each segment is percent-decoded exactly
// once, and a segment that decodes to a slash ("%2F") is refused; "%2e%2e"
// decodes to ".." and is refused like "..". Every refusal wraps ErrInvalidPath.
//
// Whatever the mapping accepts maps to a key under KeyPrefix, and that key
// maps back to the same file path and to a URL that maps to the same key.
type Mapping struct {
	// URLPrefix is the URL path the web server serves the watch folder
	// under: it starts and ends with "/", for example "/static/".
	URLPrefix string
	// KeyPrefix is prepended to every object key: empty, or a valid name
	// followed by "/", for example "original/".
	KeyPrefix string
}

// DefaultMapping is the layout the design describes: /static/NAME is stored
// as original/NAME.
var DefaultMapping = Mapping{URLPrefix: "/static/", KeyPrefix: "original/"}

// Validate reports whether the prefixes themselves follow the contract.
func (m Mapping) Validate() error {
	if !strings.HasPrefix(m.URLPrefix, "/") || !strings.HasSuffix(m.URLPrefix, "/") {
		return fmt.Errorf("%w: url prefix %q must start and end with /", ErrInvalidPath, m.URLPrefix)
	}
	if m.URLPrefix != "/" {
		inner := strings.TrimSuffix(strings.TrimPrefix(m.URLPrefix, "/"), "/")
		if err := checkName(inner); err != nil {
			return fmt.Errorf("url prefix %q: %w", m.URLPrefix, err)
		}
		// The prefix is compared with the encoded request path, so it must
		// read the same encoded and decoded.
		for _, s := range strings.Split(inner, "/") {
			if url.PathEscape(s) != s {
				return fmt.Errorf("%w: url prefix %q must not need percent-encoding", ErrInvalidPath, m.URLPrefix)
			}
		}
	}
	if m.KeyPrefix != "" {
		if !strings.HasSuffix(m.KeyPrefix, "/") {
			return fmt.Errorf("%w: key prefix %q must be empty or end with /", ErrInvalidPath, m.KeyPrefix)
		}
		if err := checkName(strings.TrimSuffix(m.KeyPrefix, "/")); err != nil {
			return fmt.Errorf("key prefix %q: %w", m.KeyPrefix, err)
		}
	}
	return nil
}

// KeyForFile maps a slash-separated path relative to the watch folder to its
// object key.
func (m Mapping) KeyForFile(rel string) (string, error) {
	if err := checkName(rel); err != nil {
		return "", err
	}
	key := m.KeyPrefix + rel
	if len(key) > MaxKeyBytes {
		return "", fmt.Errorf("%w: key is %d bytes, S3 allows %d", ErrInvalidPath, len(key), MaxKeyBytes)
	}
	return key, nil
}

// KeyForURL maps a URL path, as sent on the wire (percent-encoded, without
// the query), to its object key. A path outside URLPrefix is refused.
func (m Mapping) KeyForURL(escapedPath string) (string, error) {
	rest, ok := strings.CutPrefix(escapedPath, m.URLPrefix)
	if !ok {
		return "", fmt.Errorf("%w: %q is not under %q", ErrInvalidPath, escapedPath, m.URLPrefix)
	}
	segments := strings.Split(rest, "/")
	for i, s := range segments {
		dec, err := url.PathUnescape(s)
		if err != nil {
			return "", fmt.Errorf("%w: bad percent-encoding in %q", ErrInvalidPath, s)
		}
		if strings.ContainsRune(dec, '/') {
			return "", fmt.Errorf("%w: encoded slash in %q", ErrInvalidPath, s)
		}
		segments[i] = dec
	}
	return m.KeyForFile(strings.Join(segments, "/"))
}

// FileForKey maps an object key back to the path relative to the watch
// folder (slash-separated). A key outside KeyPrefix is refused.
func (m Mapping) FileForKey(key string) (string, error) {
	rel, ok := strings.CutPrefix(key, m.KeyPrefix)
	if !ok {
		return "", fmt.Errorf("%w: key %q is not under %q", ErrInvalidPath, key, m.KeyPrefix)
	}
	if _, err := m.KeyForFile(rel); err != nil {
		return "", err
	}
	return rel, nil
}

// URLForKey maps an object key to the URL path the site serves it under,
// each segment percent-encoded.
func (m Mapping) URLForKey(key string) (string, error) {
	rel, err := m.FileForKey(key)
	if err != nil {
		return "", err
	}
	segments := strings.Split(rel, "/")
	for i, s := range segments {
		segments[i] = url.PathEscape(s)
	}
	return m.URLPrefix + strings.Join(segments, "/"), nil
}

// checkName applies the segment rules to a relative, slash-separated name.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidPath)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidPath, name)
	}
	for _, r := range name {
		switch {
		case r == '\\':
			return fmt.Errorf("%w: backslash in %q", ErrInvalidPath, name)
		case unicode.IsControl(r):
			return fmt.Errorf("%w: control character %U in %q", ErrInvalidPath, r, name)
		case r == 0xFFFE || r == 0xFFFF:
			return fmt.Errorf("%w: non-character %U in %q", ErrInvalidPath, r, name)
		}
	}
	if strings.HasPrefix(name, "/") {
		return fmt.Errorf("%w: %q is absolute", ErrInvalidPath, name)
	}
	for _, s := range strings.Split(name, "/") {
		switch {
		case s == "":
			return fmt.Errorf("%w: empty segment in %q", ErrInvalidPath, name)
		case s == "." || s == "..":
			return fmt.Errorf("%w: %q segment in %q", ErrInvalidPath, s, name)
		case len(s) > maxSegmentBytes:
			return fmt.Errorf("%w: segment of %d bytes, the limit is %d", ErrInvalidPath, len(s), maxSegmentBytes)
		}
	}
	return nil
}

// CDNPath is the path of key on the CDN (an S3 origin without an origin
// path, so the path is the key): "/" and the key, each segment
// URIEncode'd. The resolver's CloudFront URLs and erase's invalidations
// both use it, so an invalidation names exactly the path viewers were sent
// to. A "*" is encoded too: in an invalidation path a bare "*" is a
// wildcard.
func CDNPath(key string) string {
	var b strings.Builder
	b.Grow(len(key) + 1)
	for _, seg := range strings.Split(key, "/") {
		b.WriteByte('/')
		b.WriteString(URIEncode(seg))
	}
	return b.String()
}

// URIEncode percent-encodes every byte of s but the unreserved characters
// A-Z a-z 0-9 - . _ ~, with upper-case hex: SigV4's UriEncode, which S3
// reads a key and a query value by ("Create a canonical request",
// https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html).
// So a space is %20 (a + would be read as a plus or as a space depending on
// who decodes it), a + is %2B, and % ? # are data, never syntax. A slash is
// encoded too: a caller encodes a path segment by segment.
func URIEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) * 3)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

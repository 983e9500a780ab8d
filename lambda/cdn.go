package lambda

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/photosleeve/offload/lambda/cdnsign"
)

// CDN sends visitors to a CloudFront distribution in front of the bucket
// (template.yaml, Cdn=on) instead of to S3: the 302 goes to a CloudFront
// signed URL with a canned policy, for the same object, version and
// response overrides an S3 presigned URL would name.
type CDN struct {
	// BaseURL is the distribution's URL, https://dxxxxxxxxxxxxx.cloudfront.net
	// (or an alternate domain): https, no path, query or fragment. A
	// loopback http URL is accepted for local tests.
	BaseURL string
	// Signer holds the private key whose public key the distribution's
	// key group trusts.
	Signer *cdnsign.Signer
}

// cdnParams are the query parameters of a CDN URL, in this order: exactly
// the query strings of template.yaml's CdnCachePolicy, which CloudFront
// puts in the cache key and forwards to S3 (a parameter outside it would
// not reach S3, and two variants would share one cached copy). The names
// are S3's, as in a presigned GET.
var cdnParams = []string{"versionId", "response-content-type", "response-content-disposition"}

func (c *CDN) validate() error {
	if c.Signer == nil {
		return errors.New("no signer (the private key)")
	}
	return CheckCDNBaseURL(c.BaseURL)
}

// CheckCDNBaseURL refuses what cannot be CDN.BaseURL, so a command can
// check it before it reads the key.
func CheckCDNBaseURL(raw string) error {
	c := CDN{BaseURL: raw}
	if strings.Contains(c.BaseURL, "#") {
		return fmt.Errorf("base URL %q has a fragment", c.BaseURL)
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return fmt.Errorf("base URL: %w", err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		// A local test's stand-in; CloudFront itself is https (the
		// template's behaviour is https-only).
	default:
		return fmt.Errorf("base URL %q: want https://", c.BaseURL)
	}
	switch {
	case u.User != nil:
		return fmt.Errorf("base URL %q: no user info, please", c.BaseURL)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("base URL %q has no host", c.BaseURL)
	case u.Path != "" && u.Path != "/" || u.RawPath != "":
		return fmt.Errorf("base URL %q has a path: the object key is the whole path", c.BaseURL)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("base URL %q has a query", c.BaseURL)
	case u.Opaque != "":
		return fmt.Errorf("base URL %q: want https://HOST", c.BaseURL)
	}
	return nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// signCDN is t as a CloudFront signed URL that ends at expires. The URL is
// built by hand, not by net/url, because the canned policy signs it
// byte for byte: the viewer must send exactly this string.
func (h *Handler) signCDN(t target, expires time.Time) (string, error) {
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(h.cfg.CDN.BaseURL, "/"))
	for _, seg := range strings.Split(t.key, "/") {
		b.WriteByte('/')
		b.WriteString(uriEncode(seg))
	}
	values := map[string]string{"versionId": t.versionID, "response-content-type": t.contentType, "response-content-disposition": t.disposition}
	sep := byte('?')
	for _, name := range cdnParams {
		if v := values[name]; v != "" {
			b.WriteByte(sep)
			b.WriteString(name + "=" + uriEncode(v))
			sep = '&'
		}
	}
	signed, err := h.cfg.CDN.Signer.Sign(b.String(), expires)
	if err != nil {
		return "", fmt.Errorf("sign for CloudFront %s: %w", t.key, err)
	}
	return signed, nil
}

// uriEncode percent-encodes every byte of s but the unreserved characters
// A-Z a-z 0-9 - . _ ~, with upper-case hex: SigV4's UriEncode, which S3
// reads a key and a query value by ("Create a canonical request",
// https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html).
// So a space is %20 (a + would be read as a plus or as a space depending on
// who decodes it), a + is %2B, and % ? # are data, never syntax. A slash is
// encoded too; the caller encodes segment by segment. CloudFront forwards
// the path and the whitelisted query strings to the S3 origin as the
// viewer sent them.
func uriEncode(s string) string {
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

package offload

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Errors of signed links; both are answered with 403.
var (
	ErrBadSignature = errors.New("bad link signature")
	ErrLinkExpired  = errors.New("link expired")
)

// MinSigningKeyBytes is the shortest HMAC key accepted: 128 bits.
const MinSigningKeyBytes = 16

// linkMAC is HMAC-SHA256 over a version tag, the file's path relative to
// the watch folder (decoded, so that any equivalent percent-encoding of the
// URL carries the same signature) and the expiry.
func linkMAC(key []byte, rel string, exp int64) []byte {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "offload-link-v1\n%s\n%d", rel, exp)
	return m.Sum(nil)
}

// SignLink returns the URL path of the same file, each segment
// percent-encoded, with the query "exp=UNIX&sig=HEX" that makes it a signed
// link valid until exp. urlPath is a URL path under the mapping's URL
// prefix; any encoding of the same name gives the same link.
func SignLink(key []byte, m Mapping, urlPath string, exp time.Time) (string, error) {
	if len(key) < MinSigningKeyBytes {
		return "", fmt.Errorf("signing key: %d bytes, want at least %d", len(key), MinSigningKeyBytes)
	}
	objKey, err := m.KeyForURL(urlPath)
	if err != nil {
		return "", err
	}
	rel, err := m.FileForKey(objKey)
	if err != nil {
		return "", err
	}
	// The link is built from the key, each segment percent-encoded, not
	// from urlPath as given: a raw "#" or "?" in it (a file may be named
	// "#") would end the path and cut the query off (found by
	// FuzzVerifyLink).
	canonical, err := m.URLForKey(objKey)
	if err != nil {
		return "", err
	}
	q := url.Values{}
	q.Set("exp", strconv.FormatInt(exp.Unix(), 10))
	q.Set("sig", hex.EncodeToString(linkMAC(key, rel, exp.Unix())))
	return canonical + "?" + q.Encode(), nil
}

// VerifyLink checks the exp and sig query values of a signed link for the
// file rel (as Mapping.FileForKey returns it) at time now, in constant time.
func VerifyLink(key []byte, rel, exp, sig string, now time.Time) error {
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: exp %q is not a Unix time", ErrBadSignature, exp)
	}
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: sig is not %d hex bytes", ErrBadSignature, sha256.Size)
	}
	if !hmac.Equal(got, linkMAC(key, rel, e)) {
		return ErrBadSignature
	}
	if now.Unix() > e {
		return fmt.Errorf("%w at %s", ErrLinkExpired, time.Unix(e, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

package offload

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestSignAndVerifyLink(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	link, err := SignLink(testKey, DefaultMapping, "/static/a%20b/caf%C3%A9.jpg", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if err := VerifyLink(testKey, "a b/café.jpg", q.Get("exp"), q.Get("sig"), now); err != nil {
		t.Errorf("VerifyLink on a fresh link: %v", err)
	}
	tests := []struct {
		name          string
		key           []byte
		rel, exp, sig string
		at            time.Time
		want          error
	}{
		{"expired", testKey, "a b/café.jpg", q.Get("exp"), q.Get("sig"), now.Add(2 * time.Hour), ErrLinkExpired},
		{"other file", testKey, "a b/other.jpg", q.Get("exp"), q.Get("sig"), now, ErrBadSignature},
		{"other key", []byte("another key, 32 bytes long......"), "a b/café.jpg", q.Get("exp"), q.Get("sig"), now, ErrBadSignature},
		{"exp moved later", testKey, "a b/café.jpg", "1900000000", q.Get("sig"), now, ErrBadSignature},
		{"no sig", testKey, "a b/café.jpg", q.Get("exp"), "", now, ErrBadSignature},
		{"sig not hex", testKey, "a b/café.jpg", q.Get("exp"), "zz", now, ErrBadSignature},
		{"sig truncated", testKey, "a b/café.jpg", q.Get("exp"), q.Get("sig")[:10], now, ErrBadSignature},
		{"exp not a number", testKey, "a b/café.jpg", "soon", q.Get("sig"), now, ErrBadSignature},
	}
	for _, tt := range tests {
		if err := VerifyLink(tt.key, tt.rel, tt.exp, tt.sig, tt.at); !errors.Is(err, tt.want) {
			t.Errorf("%s: VerifyLink = %v; want %v", tt.name, err, tt.want)
		}
	}
}

func TestSignLinkRefuses(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	if _, err := SignLink([]byte("short"), DefaultMapping, "/static/a.jpg", exp); err == nil || !strings.Contains(err.Error(), "signing key") {
		t.Errorf("short key: err = %v", err)
	}
	for _, p := range []string{"/other/a.jpg", "/static/../x", "/static/a%2fb"} {
		if _, err := SignLink(testKey, DefaultMapping, p, exp); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("SignLink(%q) err = %v; want ErrInvalidPath", p, err)
		}
	}
}

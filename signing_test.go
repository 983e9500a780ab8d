package offload

import (
	"errors"
	"net/url"
	"strconv"
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

// FuzzVerifyLink: a link SignLink made verifies until it expires, and
// nothing else does: not another signature, not another expiry, not
// another file. Arbitrary query values are an error, never a panic.
func FuzzVerifyLink(f *testing.F) {
	f.Add("/static/a%20b/caf%C3%A9.jpg", int64(3600), "deadbeef", "1900000000", "a b/other.jpg")
	f.Add("/static/x.jpg", int64(-1), strings.Repeat("0", 64), "+1800003600", "x.jpg")
	f.Add("/static/%2e%2e/x", int64(0), "", "", "")
	f.Add("/static/n%0Aewline.jpg", int64(60), "ZZ", "-1", "n\newline.jpg")
	f.Fuzz(func(t *testing.T, urlPath string, life int64, otherSig, otherExp, otherRel string) {
		now := time.Unix(1_800_000_000, 0)
		life = life % (10 * 365 * 24 * 3600)
		exp := now.Add(time.Duration(life) * time.Second)
		link, err := SignLink(testKey, DefaultMapping, urlPath, exp)
		if err != nil {
			return
		}
		u, err := url.Parse(link)
		if err != nil {
			t.Fatalf("SignLink(%q) = %q, which does not parse: %v", urlPath, link, err)
		}
		key, _ := DefaultMapping.KeyForURL(urlPath)
		rel, _ := DefaultMapping.FileForKey(key)
		q := u.Query()
		sig, expText := q.Get("sig"), q.Get("exp")
		err = VerifyLink(testKey, rel, expText, sig, now)
		if wantExpired := life < 0; wantExpired != errors.Is(err, ErrLinkExpired) || (!wantExpired && err != nil) {
			t.Fatalf("VerifyLink of the link SignLink made for %q, life %ds: %v", urlPath, life, err)
		}
		if !strings.EqualFold(otherSig, sig) {
			if err := VerifyLink(testKey, rel, expText, otherSig, now); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("sig %q accepted in place of %q: %v", otherSig, sig, err)
			}
		}
		if e, perr := strconv.ParseInt(otherExp, 10, 64); perr != nil || e != exp.Unix() {
			if err := VerifyLink(testKey, rel, otherExp, sig, now); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("exp %q accepted in place of %q: %v", otherExp, expText, err)
			}
		}
		if otherRel != rel {
			if err := VerifyLink(testKey, otherRel, expText, sig, now); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("the link for %q accepted for %q: %v", rel, otherRel, err)
			}
		}
	})
}

// TestSignLinkEncodesTheName: a name with "#" or "?" (legal in a file name)
// gets a link whose query survives, however the path was given.
func TestSignLinkEncodesTheName(t *testing.T) {
	exp := time.Unix(1_800_000_000, 0)
	for in, want := range map[string]string{"/static/#": "/static/%23?", "/static/a b?.jpg": "/static/a%20b%3F.jpg?", "/static/a%20b%3F.jpg": "/static/a%20b%3F.jpg?"} {
		link, err := SignLink(testKey, DefaultMapping, in, exp)
		if err != nil || !strings.HasPrefix(link, want) {
			t.Errorf("SignLink(%q) = %q, %v; want it to start with %q", in, link, err, want)
			continue
		}
		u, _ := url.Parse(link)
		if u.Query().Get("sig") == "" {
			t.Errorf("SignLink(%q) = %q: the query does not parse", in, link)
		}
	}
}

package edge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/photosleeve/offload/lambda/cdnsign"
)

// testKey makes a key of kind ("ecdsa" or "rsa") and returns its Key-Pair-Id,
// a signer from lambda/cdnsign (the project's own, written separately
// from the verification here) and the public key.
func testKey(t *testing.T, kind, id string) (*cdnsign.Signer, KeyGroup) {
	t.Helper()
	var priv any
	var err error
	if kind == "rsa" {
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cdnsign.New(id, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	if err != nil {
		t.Fatal(err)
	}
	return s, KeyGroup{id: pub}
}

// TestVerify: URLs signed by cdnsign (RSA with SHA-1, ECDSA with SHA-256
// and Hash-Algorithm) verify; every change to what was signed, an
// expired URL, an unknown key and a missing signature are refused with
// CloudFront's codes.
func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, kind := range []string{"rsa", "ecdsa"} {
		t.Run(kind, func(t *testing.T) {
			signer, kg := testKey(t, kind, "K2JCJMDEHXQW5F")
			const base = "http://d111111abcdef8.cloudfront.net/p/a%20b.jpg?versionId=v2&response-content-type=image%2Fjpeg"
			good, err := signer.Sign(base, now.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			expired, err := signer.Sign(base, now.Add(-time.Second))
			if err != nil {
				t.Fatal(err)
			}
			sig := good[strings.Index(good, "Signature=")+len("Signature="):]
			sig = sig[:strings.Index(sig, "&")]
			flipped := string(sig[0]^1) + sig[1:]
			for _, tc := range []struct {
				name, url, code string
			}{
				{"as signed", good, ""},
				{"another version", strings.Replace(good, "versionId=v2", "versionId=v1", 1), "AccessDenied"},
				{"another key", strings.Replace(good, "/p/a%20b.jpg", "/p/c.jpg", 1), "AccessDenied"},
				{"a query string added", strings.Replace(good, "?versionId", "?x=1&versionId", 1), "AccessDenied"},
				{"a signature byte changed", strings.Replace(good, sig, flipped, 1), "AccessDenied"},
				{"Expires moved", strings.Replace(good, "Expires=", "Expires=1", 1), "AccessDenied"},
				{"expired", expired, "AccessDenied"},
				{"unknown key", strings.Replace(good, "Key-Pair-Id=K2JCJMDEHXQW5F", "Key-Pair-Id=KOTHERKEY00000", 1), "AccessDenied"},
				{"unsigned", base, "MissingKey"},
				{"custom policy", good + "&Policy=e30_", "AccessDenied"},
			} {
				r := httptest.NewRequest("GET", tc.url, nil)
				d := kg.verify(r, now)
				switch {
				case tc.code == "" && d != nil:
					t.Errorf("%s: refused: %v", tc.name, d)
				case tc.code != "" && d == nil:
					t.Errorf("%s: accepted; want %s", tc.name, tc.code)
				case tc.code != "" && d.code != tc.code:
					t.Errorf("%s: %s; want %s", tc.name, d.code, tc.code)
				}
			}
		})
	}
}

// TestPolicyRebuild: the base URL is rebuilt from the request as sent,
// the viewer's own parameters in their order and encoding, CloudFront's
// removed wherever they are.
func TestPolicyRebuild(t *testing.T) {
	r := httptest.NewRequest("GET", "http://127.0.0.1:8080/p/a%20b.jpg?z=1&Expires=1800000000&versionId=a%2Bb&Signature=AAAA&Key-Pair-Id=K1&Hash-Algorithm=SHA256", nil)
	s, d := parseSigned(r)
	if d != nil {
		t.Fatal(d)
	}
	if want := "http://127.0.0.1:8080/p/a%20b.jpg?z=1&versionId=a%2Bb"; s.resource != want {
		t.Errorf("resource %q; want %q", s.resource, want)
	}
	p, err := cannedPolicy(s.resource, s.expires)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"Statement":[{"Resource":"http://127.0.0.1:8080/p/a%20b.jpg?z=1&versionId=a%2Bb","Condition":{"DateLessThan":{"AWS:EpochTime":1800000000}}}]}`; string(p) != want {
		t.Errorf("policy %s; want %s", p, want)
	}
	if _, err := cannedPolicy(`http://h/a"b`, 1); err == nil {
		t.Error(`a URL with " made a policy`)
	}
}

// TestDecodeSignature: CloudFront's base64 alphabet, - _ ~ for + = /.
func TestDecodeSignature(t *testing.T) {
	for in, want := range map[string][]byte{
		"-~~-": {0xfb, 0xff, 0xfe},
		"~w__": {0xff},
		"AQID": {1, 2, 3},
	} {
		got, err := decodeSignature(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("decodeSignature(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	// A signature with standard base64's '+' reaches the edge as a space
	// (query decoding), which does not decode.
	if _, err := decodeSignature(" w=="); err == nil {
		t.Error(`" w==" decoded`)
	}
}

// TestCacheKey: the path and the whitelisted query strings only, in the
// viewer's order; the signature's parameters stay out.
func TestCacheKey(t *testing.T) {
	p := CachePolicy{QueryStrings: []string{"versionId", "response-content-type", "response-content-disposition"}}
	for url, want := range map[string]string{
		"/p/a.jpg?versionId=v1&Expires=1&Signature=x&Key-Pair-Id=K":                  "/p/a.jpg?versionId=v1",
		"/p/a.jpg?versionId=v1&Expires=2&Signature=y&Key-Pair-Id=K&Hash-Algorithm=x": "/p/a.jpg?versionId=v1",
		"/p/a.jpg?utm=1&response-content-type=image%2Fpng&versionId=v1":              "/p/a.jpg?response-content-type=image%2Fpng&versionId=v1",
		"/p/a%20b.jpg?Expires=1": "/p/a%20b.jpg",
	} {
		k, err := p.keyOf(httptest.NewRequest("GET", url, nil))
		if err != nil || k.String() != want {
			t.Errorf("key of %s = %q, %v; want %q", url, k.String(), err, want)
		}
	}
}

// TestInvalidationMatches: exact paths, the trailing wildcard, and query
// strings as "Invalidate files" has them.
func TestInvalidationMatches(t *testing.T) {
	versioned := cacheKey{path: "/p/a%20b.jpg", query: "versionId=v1"}
	plain := cacheKey{path: "/p/a%20b.jpg"}
	for _, tc := range []struct {
		path string
		k    cacheKey
		want bool
	}{
		{"/p/a b.jpg", plain, true},
		{"/p/a%20b.jpg", plain, true},
		{"/p/a b.jpg", versioned, false}, // another query string: not this one
		{"/p/a b.jpg?versionId=v1", versioned, true},
		{"/p/a b.jpg?versionId=v2", versioned, false},
		{"/p/a b.jpg*", versioned, true},
		{"/p/*", versioned, true},
		{"/*", plain, true},
		{"/P/*", plain, false}, // case sensitive
		{"/p/a*b.jpg", plain, false},
		{"/q/*", plain, false},
	} {
		if got := invalidationMatches(tc.path, tc.k); got != tc.want {
			t.Errorf("%q on %q: %v; want %v", tc.path, tc.k, got, tc.want)
		}
	}
}

// TestTTL: the cache policy's TTLs against the origin's headers.
func TestTTL(t *testing.T) {
	p := CachePolicy{MinTTL: 0, DefaultTTL: 24 * time.Hour, MaxTTL: 365 * 24 * time.Hour}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	date := now.Format(timeFormat)
	for _, tc := range []struct {
		cc, expires string
		want        time.Duration
	}{
		{"", "", 24 * time.Hour},
		{"max-age=60", "", time.Minute},
		{"max-age=60, s-maxage=120", "", 2 * time.Minute},
		{"max-age=999999999", "", 365 * 24 * time.Hour},
		{"no-store", "", 0},
		{"private, max-age=60", "", 0},
		{"", now.Add(time.Hour).Format(timeFormat), time.Hour},
		{"", "0", 0},
		{"max-age=60", now.Add(time.Hour).Format(timeFormat), time.Minute},
	} {
		if got := p.ttl(tc.cc, tc.expires, date, now); got != tc.want {
			t.Errorf("Cache-Control %q, Expires %q: %v; want %v", tc.cc, tc.expires, got, tc.want)
		}
	}
	p.MinTTL = time.Hour
	if got := p.ttl("max-age=60", "", date, now); got != time.Hour {
		t.Errorf("max-age below MinTTL: %v; want MinTTL", got)
	}
}

const timeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// TestCachePolicyFromTemplate reads template.yaml's CdnCachePolicy.
func TestCachePolicyFromTemplate(t *testing.T) {
	b, err := os.ReadFile("../../../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := CachePolicyFromTemplate(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.MinTTL != 0 || p.DefaultTTL != 24*time.Hour || p.MaxTTL != 365*24*time.Hour {
		t.Errorf("TTLs %v %v %v; want 0, 24h, 8760h", p.MinTTL, p.DefaultTTL, p.MaxTTL)
	}
	if want := []string{"versionId", "response-content-type", "response-content-disposition"}; !slices.Equal(p.QueryStrings, want) {
		t.Errorf("query strings %v; want %v", p.QueryStrings, want)
	}
	withHeader := strings.Replace(string(b), "HeaderBehavior: none", "HeaderBehavior: whitelist", 1)
	if _, err := CachePolicyFromTemplate([]byte(withHeader)); err == nil {
		t.Error("a header in the cache key: no error")
	}
}

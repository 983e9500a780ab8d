package lambda

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gopkg.in/yaml.v3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/lambda/cdnsign"
)

const testCDNBase = "https://d111111abcdef8.cloudfront.net"

// testSigner is a CloudFront signer with a fresh ECDSA P-256 key.
func testSigner(tb testing.TB) *cdnsign.Signer {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := cdnsign.New("K2JCJMDEHXQW5F", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// cdnHandler is offlineHandler with the CDN on.
func cdnHandler(tb testing.TB, creds aws.CredentialsProvider) *Handler {
	tb.Helper()
	c := s3.New(s3.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: aws.String(offlineEndpoint), UsePathStyle: true})
	h, err := NewHandler(Config{Mapping: offload.DefaultMapping, Bucket: "bucket", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		CDN: &CDN{BaseURL: testCDNBase, Signer: testSigner(tb)}}, s3.NewPresignClient(c), nil, creds)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func redirect(t *testing.T, h *Handler, method, target string) string {
	t.Helper()
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequest(method, target, nil)
	h.ServeHTTP(rec, req)
	if rec.status != http.StatusFound {
		t.Fatalf("%s %s: status %d; want 302", method, target, rec.status)
	}
	return rec.header.Get("Location")
}

// TestCDNLocation: with the CDN on, the 302 goes to the distribution: the
// object key percent-encoded per segment (every byte but the unreserved
// ones, as S3 and CloudFront read a path), then exactly the parameters the
// S3 presign carries, in the cache policy's order, then the signature.
func TestCDNLocation(t *testing.T) {
	h := cdnHandler(t, nil)
	h.now = func() time.Time { return time.Date(2026, 11, 25, 10, 0, 10, 0, time.UTC) }
	for _, tt := range []struct{ path, key, encoded, query string }{
		{"/static/cat.jpg", "original/cat.jpg", "original/cat.jpg", "response-content-type=image%2Fjpeg"},
		{"/static/2026/a%20b.jpg", "original/2026/a b.jpg", "original/2026/a%20b.jpg", "response-content-type=image%2Fjpeg"},
		{"/static/caf%C3%A9.jpg", "original/café.jpg", "original/caf%C3%A9.jpg", "response-content-type=image%2Fjpeg"},
		{"/static/a+b.jpg", "original/a+b.jpg", "original/a%2Bb.jpg", "response-content-type=image%2Fjpeg"},
		{"/static/100%25.jpg", "original/100%.jpg", "original/100%25.jpg", "response-content-type=image%2Fjpeg"},
		{"/static/what%3F.jpg", "original/what?.jpg", "original/what%3F.jpg", "response-content-type=image%2Fjpeg"},
		{"/static/%231.jpg", "original/#1.jpg", "original/%231.jpg", "response-content-type=image%2Fjpeg"},
		{"/static/it's~(1)_x-y.jpg", "original/it's~(1)_x-y.jpg", "original/it%27s~%281%29_x-y.jpg", "response-content-type=image%2Fjpeg"},
		{"/static/page.html", "original/page.html", "original/page.html",
			"response-content-type=application%2Foctet-stream&response-content-disposition=attachment%3B%20filename%3Dpage.html"},
		{"/static/cat.jpg?download=1", "original/cat.jpg", "original/cat.jpg",
			"response-content-type=image%2Fjpeg&response-content-disposition=attachment%3B%20filename%3Dcat.jpg"},
	} {
		loc := redirect(t, h, http.MethodGet, tt.path)
		resource, signature, ok := strings.Cut(loc, "&Expires=")
		if !ok {
			t.Errorf("%s: no signature in %s", tt.path, loc)
			continue
		}
		if want := testCDNBase + "/" + tt.encoded + "?" + tt.query; resource != want {
			t.Errorf("%s: Location before the signature\n got %s\nwant %s", tt.path, resource, want)
		}
		u, err := url.Parse(loc)
		if err != nil || u.Path != "/"+tt.key {
			t.Errorf("%s: Location %s decodes to path %q (%v); want /%s", tt.path, loc, u.Path, err, tt.key)
		}
		if !strings.Contains(signature, "&Key-Pair-Id=K2JCJMDEHXQW5F&Hash-Algorithm=SHA256") {
			t.Errorf("%s: signature part %q", tt.path, signature)
		}
	}
}

// TestCDNPinsRecordedVersion: the ledger's version goes first, as
// versionId; a ledger's type is judged by the same allowlist.
func TestCDNPinsRecordedVersion(t *testing.T) {
	h := cdnHandler(t, nil)
	h.ledger, h.cfg.Table = refusingLedger{}, "ledger"
	at := time.Date(2026, 11, 25, 10, 0, 10, 0, time.UTC)
	h.now = func() time.Time { return at }
	h.cache.putRecord(at.Truncate(h.window), "original/cat.jpg", recorded{versionID: "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY", contentType: "image/jpeg"})
	h.cache.putRecord(at.Truncate(h.window), "original/x.jpg", recorded{versionID: "v+1/2", contentType: "image/svg+xml"})
	h.cache.putRecord(at.Truncate(h.window), "original/gone.jpg", recorded{gone: true})
	if loc := redirect(t, h, http.MethodGet, "/static/cat.jpg"); !strings.HasPrefix(loc, testCDNBase+
		"/original/cat.jpg?versionId=3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY&response-content-type=image%2Fjpeg&Expires=") {
		t.Errorf("Location %s", loc)
	}
	if loc := redirect(t, h, http.MethodGet, "/static/x.jpg"); !strings.HasPrefix(loc, testCDNBase+
		"/original/x.jpg?versionId=v%2B1%2F2&response-content-type=application%2Foctet-stream&response-content-disposition=attachment%3B%20filename%3Dx.jpg&Expires=") {
		t.Errorf("Location %s", loc)
	}
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "/static/gone.jpg", nil)
	h.ServeHTTP(rec, req)
	if rec.status != http.StatusGone || rec.header.Get("Location") != "" {
		t.Errorf("erased: status %d, Location %q; want 410 and none", rec.status, rec.header.Get("Location"))
	}
}

// TestCDNSignedOncePerWindow: within a window one URL, for GET and HEAD
// alike (a CloudFront signature does not name the method), expiring at the
// window's start plus the expiry; the next window signs a new one. The
// role's credentials play no part: they do not sign the URL.
func TestCDNSignedOncePerWindow(t *testing.T) {
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	// Credentials about to end would cut or refuse an S3 URL.
	h := cdnHandler(t, expiringCreds(base.Add(30*time.Second)))
	at := func(d time.Duration) { h.now = func() time.Time { return base.Add(d) } }
	at(10 * time.Second)
	first := redirect(t, h, http.MethodGet, "/static/cat.jpg")
	u, _ := url.Parse(first)
	if got, want := u.Query().Get("Expires"), strconv.FormatInt(base.Add(DefaultExpiry).Unix(), 10); got != want {
		t.Errorf("Expires=%s; want the window's start plus %s, %s", got, DefaultExpiry, want)
	}
	at(59 * time.Second)
	if again := redirect(t, h, http.MethodHead, "/static/cat.jpg"); again != first {
		t.Errorf("HEAD in the same window got another URL:\n%s\n%s", first, again)
	}
	at(61 * time.Second)
	next := redirect(t, h, http.MethodGet, "/static/cat.jpg")
	if next == first {
		t.Errorf("the next window reused the URL")
	}
	u, _ = url.Parse(next)
	if got, want := u.Query().Get("Expires"), strconv.FormatInt(base.Add(time.Minute+DefaultExpiry).Unix(), 10); got != want {
		t.Errorf("next window: Expires=%s; want %s", got, want)
	}
}

// TestCDNKeepsSignedLinks: the site's own link check still comes first.
func TestCDNKeepsSignedLinks(t *testing.T) {
	h := cdnHandler(t, nil)
	h.cfg.Access = SignedLinks{Key: []byte("0123456789abcdef0123")}
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "/static/cat.jpg?exp=4102444800&sig=deadbeef", nil)
	h.ServeHTTP(rec, req)
	if rec.status != http.StatusForbidden || rec.header.Get("Location") != "" {
		t.Errorf("bad link: status %d, Location %q; want 403 and none", rec.status, rec.header.Get("Location"))
	}
	link, err := offload.SignLink([]byte("0123456789abcdef0123"), offload.DefaultMapping, "/static/cat.jpg", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if loc := redirect(t, h, http.MethodGet, link); !strings.HasPrefix(loc, testCDNBase+"/original/cat.jpg?") {
		t.Errorf("signed link: Location %s", loc)
	}
}

func TestCDNConfigRefused(t *testing.T) {
	s := testSigner(t)
	for _, tt := range []struct {
		cdn  CDN
		want string
	}{
		{CDN{BaseURL: "http://d111111abcdef8.cloudfront.net", Signer: s}, "https"},
		{CDN{BaseURL: "https://d111111abcdef8.cloudfront.net/originals", Signer: s}, "path"},
		{CDN{BaseURL: "https://d111111abcdef8.cloudfront.net?a=1", Signer: s}, "query"},
		{CDN{BaseURL: "https://d111111abcdef8.cloudfront.net#x", Signer: s}, "fragment"},
		{CDN{BaseURL: "https://user@d111111abcdef8.cloudfront.net", Signer: s}, "user"},
		{CDN{BaseURL: "d111111abcdef8.cloudfront.net", Signer: s}, "https"},
		{CDN{BaseURL: "https://", Signer: s}, "host"},
		{CDN{BaseURL: "http://localhost.example.com:8080", Signer: s}, "https"},
		{CDN{BaseURL: testCDNBase}, "signer"},
	} {
		err := Config{Mapping: offload.DefaultMapping, Bucket: "b", CDN: &tt.cdn}.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CDN %q: error %v; want one mentioning %q", tt.cdn.BaseURL, err, tt.want)
		}
	}
	for _, base := range []string{testCDNBase, testCDNBase + "/", "https://cdn.example.com", "http://127.0.0.1:8080", "http://[::1]:9"} {
		if err := (Config{Mapping: offload.DefaultMapping, Bucket: "b", CDN: &CDN{BaseURL: base, Signer: s}}).Validate(); err != nil {
			t.Errorf("CDN %q refused: %v", base, err)
		}
	}
}

// TestCDNParamsAreTheCacheKey: the query strings of the resolver's CDN
// URLs, CloudFront's own signature parameters aside, are exactly those in
// template.yaml's CdnCachePolicy, in its order. A parameter outside the
// key would not reach S3 (CloudFront forwards only the whitelisted query
// strings), and two URLs that differ only in it would share one cached
// copy; one in the key that the resolver never sends would be dead.
func TestCDNParamsAreTheCacheKey(t *testing.T) {
	raw, err := os.ReadFile("../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tmpl struct {
		Resources struct {
			CdnCachePolicy struct {
				Properties struct {
					CachePolicyConfig struct {
						ParametersInCacheKeyAndForwardedToOrigin struct {
							QueryStringsConfig struct {
								QueryStringBehavior string   `yaml:"QueryStringBehavior"`
								QueryStrings        []string `yaml:"QueryStrings"`
							} `yaml:"QueryStringsConfig"`
						} `yaml:"ParametersInCacheKeyAndForwardedToOrigin"`
					} `yaml:"CachePolicyConfig"`
				} `yaml:"Properties"`
			} `yaml:"CdnCachePolicy"`
		} `yaml:"Resources"`
	}
	if err := yaml.Unmarshal(raw, &tmpl); err != nil {
		t.Fatal(err)
	}
	qs := tmpl.Resources.CdnCachePolicy.Properties.CachePolicyConfig.ParametersInCacheKeyAndForwardedToOrigin.QueryStringsConfig
	if qs.QueryStringBehavior != "whitelist" || len(qs.QueryStrings) == 0 {
		t.Fatalf("CdnCachePolicy query strings: %s %v; want a whitelist", qs.QueryStringBehavior, qs.QueryStrings)
	}
	inKey := map[string]bool{}
	for _, q := range qs.QueryStrings {
		inKey[q] = true
	}

	h := cdnHandler(t, nil)
	h.ledger, h.cfg.Table = refusingLedger{}, "ledger"
	at := time.Date(2026, 11, 25, 10, 0, 10, 0, time.UTC)
	h.now = func() time.Time { return at }
	h.cache.putRecord(at.Truncate(h.window), "original/cat.jpg", recorded{versionID: "v1", contentType: "image/jpeg"})
	h.cache.putRecord(at.Truncate(h.window), "original/page.html", recorded{versionID: "v2", contentType: "text/html"})
	carried := map[string]bool{}
	for _, target := range []string{"/static/cat.jpg", "/static/cat.jpg?download=1", "/static/page.html"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			loc := redirect(t, h, method, target)
			resource, _, _ := strings.Cut(loc, "&Expires=")
			_, query, _ := strings.Cut(resource, "?")
			var names []string
			for _, kv := range strings.Split(query, "&") {
				name, _, _ := strings.Cut(kv, "=")
				names = append(names, name)
				carried[name] = true
				if !inKey[name] {
					t.Errorf("%s %s: parameter %q is not in the cache key %v", method, target, name, qs.QueryStrings)
				}
			}
			// The template's order, whatever is left out.
			var order []string
			for _, q := range qs.QueryStrings {
				if slices.Contains(names, q) {
					order = append(order, q)
				}
			}
			if !slices.Equal(names, order) {
				t.Errorf("%s %s: parameters %v; want the cache key's order %v", method, target, names, order)
			}
		}
	}
	for _, q := range qs.QueryStrings {
		if !carried[q] {
			t.Errorf("the cache key has %q, which no CDN URL carried", q)
		}
	}
}

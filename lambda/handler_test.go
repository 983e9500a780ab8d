package lambda

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
)

const offlineEndpoint = "http://127.0.0.1:9000" // presigning is offline; nothing is sent

// offlineHandler presigns with static credentials and no ledger: pure logic.
func offlineHandler(tb testing.TB, creds aws.CredentialsProvider) *Handler {
	tb.Helper()
	c := s3.New(s3.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: aws.String(offlineEndpoint), UsePathStyle: true})
	h, err := NewHandler(Config{Mapping: offload.DefaultMapping, Bucket: "bucket", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		s3.NewPresignClient(c), nil, creds)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// FuzzFunctionURL: whatever path and query arrive, the resolver does not
// panic, and any 302 points at the bucket's endpoint under the key prefix
// (no open redirect).
func FuzzFunctionURL(f *testing.F) {
	for _, s := range [][2]string{
		{"/static/cat.jpg", ""}, {"/static/cat.jpg", "download=1"}, {"//evil.example/x", ""},
		{"/static/%2e%2e/x", ""}, {"/static/a%2fb", ""}, {"/static/%zz", "a=%zz"}, {"/static/\x00", ""},
		{"/static/https://evil.example/", "redirect=https://evil.example"}, {"/static/caf%C3%A9.jpg", "exp=1&sig=00"},
	} {
		f.Add(s[0], s[1])
	}
	h := FunctionURLHandler(offlineHandler(f, nil))
	f.Fuzz(func(t *testing.T, rawPath, rawQuery string) {
		ev := events.LambdaFunctionURLRequest{RawPath: rawPath, RawQueryString: rawQuery}
		ev.RequestContext.HTTP.Method = "GET"
		resp, err := h(context.Background(), ev)
		if err != nil {
			t.Fatalf("handler error: %v", err)
		}
		if resp.StatusCode != http.StatusFound {
			if resp.Headers["Location"] != "" {
				t.Fatalf("status %d with Location %q", resp.StatusCode, resp.Headers["Location"])
			}
			return
		}
		u, err := url.Parse(resp.Headers["Location"])
		if err != nil {
			t.Fatalf("Location %q: %v", resp.Headers["Location"], err)
		}
		if u.Scheme+"://"+u.Host != offlineEndpoint || !strings.HasPrefix(u.Path, "/bucket/"+offload.DefaultMapping.KeyPrefix) {
			t.Fatalf("path %q query %q redirected to %q", rawPath, rawQuery, u)
		}
		key, err := offload.DefaultMapping.KeyForURL(rawPath)
		if err != nil || "/bucket/"+key != u.Path {
			t.Fatalf("path %q redirected to key %q; the mapping says %q, %v", rawPath, u.Path, key, err)
		}
	})
}

// expiringCreds are credentials that end at a fixed time.
type expiringCreds time.Time

func (e expiringCreds) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "SECRET", SessionToken: "T", CanExpire: true, Expires: time.Time(e)}, nil
}

func TestExpiryClampedToCredentials(t *testing.T) {
	for left, want := range map[time.Duration]int{
		time.Hour:        900, // the configured 15 min
		6 * time.Minute:  300, // 6 min less the 1 min margin
		30 * time.Second: 0,   // too close to the end: 503
	} {
		h := offlineHandler(t, expiringCreds(time.Now().Add(left)))
		rec := &recorder{header: http.Header{}}
		req, _ := http.NewRequest(http.MethodGet, "/static/cat.jpg", nil)
		h.ServeHTTP(rec, req)
		loc := rec.header.Get("Location")
		if want == 0 {
			if rec.status != http.StatusServiceUnavailable {
				t.Errorf("credentials ending in %s: status %d; want 503", left, rec.status)
			}
			continue
		}
		u, _ := url.Parse(loc)
		// The test's own run time may take a second off.
		if got, _ := strconv.Atoi(u.Query().Get("X-Amz-Expires")); got < want-5 || got > want {
			t.Errorf("credentials ending in %s: X-Amz-Expires=%d; want %d", left, got, want)
		}
	}
}

func TestLogsCarryNoSecrets(t *testing.T) {
	var logs bytes.Buffer
	h := offlineHandler(t, nil)
	h.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	h.cfg.Access = SignedLinks{Key: []byte("0123456789abcdef0123")}
	req, _ := http.NewRequest(http.MethodGet, "/static/cat.jpg?exp=4102444800&sig=deadbeef", nil)
	h.ServeHTTP(&recorder{header: http.Header{}}, req)
	for _, secret := range []string{"deadbeef", "X-Amz-Signature", "SECRET"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log line contains %q: %s", secret, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "status=403") {
		t.Errorf("no request line logged: %s", logs.String())
	}
}

// BenchmarkRedirect is the hot path without the ledger: map, presign, headers.
func BenchmarkRedirect(b *testing.B) {
	h := offlineHandler(b, nil)
	req, _ := http.NewRequest(http.MethodGet, "/static/2026/11/cat.jpg", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, req)
		if rec.status != http.StatusFound {
			b.Fatalf("status %d", rec.status)
		}
	}
}

// BenchmarkKeyForURL is the naming contract on the resolver's side.
func BenchmarkKeyForURL(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := offload.DefaultMapping.KeyForURL("/static/2026/11/caf%C3%A9%20au%20lait.jpg"); err != nil {
			b.Fatal(err)
		}
	}
}

package lambda_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
	"github.com/photosleeve/offload/lambda"
)

// TestHeadFollowedToS3: a HEAD to the resolver, followed to S3 with HEAD
// as HTTP clients do, gets 200 and the original's length. The URL signed
// for a GET would not do: S3 answers a HEAD on it with 403, which is what
// the resolver used to send.
func TestHeadFollowedToS3(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	srv := httptest.NewServer(w.handler(t, nil))
	defer srv.Close()

	resp, err := stacktest.HTTPClient(t).Head(srv.URL + "/static/cat.jpg") // follows the 302, still with HEAD
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(w.files["cat.jpg"])) {
		t.Errorf("HEAD followed to S3: %s, Content-Length %d; want 200 OK, %d", resp.Status, resp.ContentLength, len(w.files["cat.jpg"]))
	}
	if got := resp.Request.Method; got != http.MethodHead || !strings.HasPrefix(resp.Request.URL.String(), w.s3Endpoint) {
		t.Errorf("the answer came from %s %s; want HEAD on %s", got, resp.Request.URL, w.s3Endpoint)
	}

	// The difference made visible: the GET URL refuses a HEAD.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get(srv.URL + "/static/cat.jpg")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := stacktest.StatusOf(t, http.MethodHead, resp.Header.Get("Location")); got != http.StatusForbidden {
		t.Errorf("HEAD on the URL signed for GET: %d; want 403 (the method is signed)", got)
	}
}

// TestRedirectPinsRecordedVersion: the resolver redirects to the version
// the ledger recorded, so a later write under the same key, even with the
// bucket owner's credentials, never changes what visitors get.
func TestRedirectPinsRecordedVersion(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	w.enableVersioning(t)
	v1, v2 := []byte("\xff\xd8\xff the original"), []byte("\xff\xd8\xff a later write, longer than the original")
	version := w.upload(t, "pinned.jpg", v1, "image/jpeg")
	if version == "" || version == "null" {
		t.Fatalf("PutObject on a versioned bucket gave version %q", version)
	}
	key := w.prefix + "pinned.jpg"
	if _, err := w.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(w.st.Bucket), Key: aws.String(key), Body: bytes.NewReader(v2)}); err != nil {
		t.Fatalf("overwrite with the root credentials: %v", err)
	}
	current, err := w.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(w.st.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(current.Body)
	current.Body.Close()
	if !bytes.Equal(b, v2) {
		t.Fatalf("the overwrite did not take: the current version is %q", b)
	}

	h := w.handler(t, nil)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "/static/pinned.jpg", nil))
		if rec.Code != http.StatusFound {
			t.Fatalf("%s: status %d; want 302", method, rec.Code)
		}
		loc := rec.Header().Get("Location")
		w.checkLocation(t, method+" pinned", loc)
		u, _ := url.Parse(loc)
		if got := u.Query().Get("versionId"); got != version {
			t.Errorf("%s: versionId %q in the Location; want the recorded %q", method, got, version)
		}
		if method == http.MethodHead {
			if n := head(t, loc); n != int64(len(v1)) {
				t.Errorf("HEAD: Content-Length %d; want the recorded version's %d", n, len(v1))
			}
		} else if got := fetch(t, loc); !bytes.Equal(got, v1) {
			t.Errorf("GET: the redirect gave %q; want the recorded version %q", got, v1)
		}
	}
}

// enableVersioning versions the stack's bucket, like the template's.
// Idempotent and harmless for the other tests.
func (w *world) enableVersioning(t *testing.T) {
	t.Helper()
	if _, err := w.s3.PutBucketVersioning(context.Background(), &s3.PutBucketVersioningInput{Bucket: aws.String(w.st.Bucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatalf("enable versioning: %v", err)
	}
}

// TestUnsafeTypesDownloadFromS3: an SVG or HTML original is served by S3
// itself as an octet-stream attachment, never rendered in the bucket's
// origin; an image keeps its type and shows inline.
func TestUnsafeTypesDownloadFromS3(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	for rel, ctype := range map[string]string{
		"logo.svg":  "image/svg+xml",
		"page.html": "text/html; charset=utf-8",
	} {
		w.upload(t, rel, []byte(`<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.domain)"/>`), ctype)
	}
	srv := httptest.NewServer(w.handler(t, nil))
	defer srv.Close()
	browser := stacktest.HTTPClient(t)
	for _, tt := range []struct {
		rel, contentType, disposition string
	}{
		{"logo.svg", "application/octet-stream", `attachment; filename=logo.svg`},
		{"page.html", "application/octet-stream", `attachment; filename=page.html`},
		{"cat.jpg", "image/jpeg", ""},
	} {
		resp, err := browser.Get(srv.URL + "/static/" + tt.rel) // followed to S3
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s from S3", tt.rel, resp.Status)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != tt.contentType {
			t.Errorf("%s: S3 served Content-Type %q; want %q", tt.rel, got, tt.contentType)
		}
		if got := resp.Header.Get("Content-Disposition"); got != tt.disposition {
			t.Errorf("%s: S3 served Content-Disposition %q; want %q", tt.rel, got, tt.disposition)
		}
	}
}

// TestSlowLedgerIs503WithRetryAfter: with the real DynamoDB client behind a
// proxy that holds every answer, the resolver gives up on its own deadline,
// well inside the function's 5 s, with a 503 that says when to come back.
func TestSlowLedgerIs503WithRetryAfter(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	proxy := w.st.Proxy(t, w.st.DynamoDBEndpoint)
	proxy.AddToxic("stall", "latency", "downstream", map[string]any{"latency": 10000})
	cfg := w.st.AWSConfig(t)
	slowDB := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(proxy.Endpoint) })
	h, err := lambda.NewHandler(lambda.Config{
		Mapping: offload.Mapping{URLPrefix: "/static/", KeyPrefix: w.prefix},
		Bucket:  w.st.Bucket, Table: w.st.Table, Verify: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, s3.NewPresignClient(w.resolverS3), slowDB, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	start := time.Now()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/static/cat.jpg", nil))
	took := time.Since(start)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("stalled ledger: status %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if took > 4*time.Second {
		t.Errorf("stalled ledger answered after %s; the function's Timeout is 5 s", took)
	}
}

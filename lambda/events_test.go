package lambda_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
	"github.com/photosleeve/offload/lambda"
)

// eventsSigningKey is the test key the signed-* events are signed with.
const eventsSigningKey = "events-test-signing-key-0123456789"

// world is a bucket prefix with the originals the events name, uploaded
// and recorded on the real stack.
type world struct {
	st *stacktest.Stack
	s3 *s3.Client // the stack's root: uploads as the agent would, and checks
	// resolverS3 has only what template.yaml grants the resolver function,
	// and reaches MinIO through the stack's AWS shim (which refuses, as AWS
	// does, what the policy does not allow and MinIO would): every URL the
	// handlers under test sign is signed with it, for s3Endpoint.
	resolverS3 *s3.Client
	s3Endpoint string
	db         *dynamodb.Client
	prefix     string
	files      map[string][]byte // rel -> bytes
}

func newWorld(t *testing.T) *world {
	t.Helper()
	st := stacktest.Require(t)
	shim := st.AWSShimEndpoint(t)
	w := &world{st: st, s3: st.S3(t), resolverS3: st.S3For(t, stacktest.Resolver, shim), s3Endpoint: shim, db: st.DynamoDB(t), prefix: stacktest.Prefix(t), files: map[string][]byte{
		"cat.jpg":               []byte("\xff\xd8\xff a cat"),
		"2026/café au lait.jpg": []byte("\xff\xd8\xff coffee"),
	}}
	for rel, data := range w.files {
		w.upload(t, rel, data, "image/jpeg")
	}
	return w
}

// upload puts an original under the world's prefix as the agent does
// (checksum, content type) and records it in the ledger with the version
// S3 gave it, as the agent does. It returns that version (empty when the
// bucket is not versioned).
func (w *world) upload(t *testing.T, rel string, data []byte, contentType string) string {
	t.Helper()
	ctx := context.Background()
	key := w.prefix + rel
	c := offload.NewCRC64NVME()
	c.Write(data)
	sum := offload.EncodeChecksum(c.Sum64())
	out, err := w.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(w.st.Bucket), Key: aws.String(key), Body: bytes.NewReader(data),
		ContentType: aws.String(contentType), ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc64nvme, ChecksumCRC64NVME: aws.String(sum)})
	if err != nil {
		t.Fatal(err)
	}
	rec := offload.Record{Key: key, Size: int64(len(data)), CRC64NVME: sum, ETag: aws.ToString(out.ETag), VersionID: aws.ToString(out.VersionId),
		ContentType: contentType, Host: "web1", Path: rel, UploadedAt: time.Now()}
	if _, err := w.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(w.st.Table), Item: rec.Item()}); err != nil {
		t.Fatal(err)
	}
	return rec.VersionID
}

func (w *world) handler(t *testing.T, change func(*lambda.Config)) http.Handler {
	t.Helper()
	cfg := lambda.Config{
		Mapping: offload.Mapping{URLPrefix: "/static/", KeyPrefix: w.prefix},
		Bucket:  w.st.Bucket, Table: w.st.Table, Verify: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if change != nil {
		change(&cfg)
	}
	h, err := lambda.NewHandler(cfg, s3.NewPresignClient(w.resolverS3), w.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func loadEvent(t *testing.T, name string) events.LambdaFunctionURLRequest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "events", name))
	if err != nil {
		t.Fatal(err)
	}
	var ev events.LambdaFunctionURLRequest
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return ev
}

// TestEvents drives every file in events/ through the Lambda face.
func TestEvents(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	open := lambda.FunctionURLHandler(w.handler(t, nil))
	signed := lambda.FunctionURLHandler(w.handler(t, func(c *lambda.Config) {
		c.Access = lambda.SignedLinks{Key: []byte(eventsSigningKey)}
	}))
	tests := []struct {
		file    string
		signed  bool
		status  int
		fetch   string // rel whose bytes the Location must return
		headers map[string]string
	}{
		{"get-hit.json", false, 302, "cat.jpg", nil},
		{"get-hit-encoded.json", false, 302, "2026/café au lait.jpg", nil},
		{"get-hit-download.json", false, 302, "cat.jpg", nil},
		{"head-hit.json", false, 302, "cat.jpg", nil}, // followed with HEAD
		{"get-miss.json", false, 404, "", map[string]string{"Cache-Control": "no-store"}},
		{"post.json", false, 405, "", map[string]string{"Allow": "GET, HEAD"}},
		{"get-outside-prefix.json", false, 404, "", nil},
		{"get-traversal.json", false, 400, "", nil},
		{"get-traversal-dots.json", false, 400, "", nil},
		{"get-nul.json", false, 400, "", nil},
		{"get-open-redirect.json", false, 400, "", nil},
		{"signed-good.json", true, 302, "cat.jpg", nil},
		{"signed-bad.json", true, 403, "", nil},
		{"signed-expired.json", true, 403, "", nil},
		{"get-hit.json", true, 403, "", nil}, // unsigned link where links must be signed
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		h := open
		if tt.signed {
			h = signed
		}
		resp, err := h(context.Background(), loadEvent(t, tt.file))
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		if resp.StatusCode != tt.status {
			t.Errorf("%s (signed %v): status %d; want %d (body %q)", tt.file, tt.signed, resp.StatusCode, tt.status, resp.Body)
			continue
		}
		for k, v := range tt.headers {
			if resp.Headers[k] != v {
				t.Errorf("%s: %s = %q; want %q", tt.file, k, resp.Headers[k], v)
			}
		}
		loc := resp.Headers["Location"]
		if tt.status != 302 {
			if loc != "" {
				t.Errorf("%s: status %d with a Location %q", tt.file, tt.status, loc)
			}
			continue
		}
		w.checkLocation(t, tt.file, loc)
		// A fifth of the life the URL has left: 15 min signed at the start
		// of a 1 min window.
		cc := resp.Headers["Cache-Control"]
		if age, err := strconv.Atoi(strings.TrimPrefix(cc, "private, max-age=")); err != nil || age < 168 || age > 180 {
			t.Errorf("%s: Cache-Control = %q; want private, max-age between 168 and 180", tt.file, cc)
		}
		if tt.file == "get-hit-download.json" && !strings.Contains(loc, "response-content-disposition=attachment") {
			t.Errorf("%s: no attachment disposition in %s", tt.file, loc)
		}
		if tt.file == "head-hit.json" && resp.Body != "" {
			t.Errorf("%s: HEAD answered with a body %q", tt.file, resp.Body)
		}
		if tt.fetch != "" && tt.file == "head-hit.json" {
			if n := head(t, loc); n != int64(len(w.files[tt.fetch])) {
				t.Errorf("%s: HEAD of the presigned URL: Content-Length %d; want %d", tt.file, n, len(w.files[tt.fetch]))
			}
		} else if tt.fetch != "" {
			got := fetch(t, loc)
			if !bytes.Equal(got, w.files[tt.fetch]) {
				t.Errorf("%s: the presigned URL returned %q; want %q", tt.file, got, w.files[tt.fetch])
			}
		}
	}
	entries, _ := os.ReadDir(filepath.Join("..", "events"))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") && !seen[e.Name()] {
			t.Errorf("events/%s is not covered by TestEvents", e.Name())
		}
	}
}

// checkLocation: a redirect only ever points at the bucket's own endpoint,
// under the key prefix.
func (w *world) checkLocation(t *testing.T, name, loc string) {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("%s: Location %q: %v", name, loc, err)
	}
	ep, _ := url.Parse(w.s3Endpoint)
	if u.Scheme != ep.Scheme || u.Host != ep.Host || !strings.HasPrefix(u.Path, "/"+w.st.Bucket+"/"+w.prefix) {
		t.Errorf("%s: Location %q is not on %s under /%s/%s", name, loc, w.s3Endpoint, w.st.Bucket, w.prefix)
	}
}

func fetch(t *testing.T, loc string) []byte {
	t.Helper()
	resp, err := stacktest.HTTPClient(t).Get(loc)
	if err != nil {
		t.Fatalf("GET %s: %v", loc, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET presigned URL: %s: %s", resp.Status, b)
	}
	return b
}

// head sends HEAD to a presigned URL, as a client that follows the
// resolver's 302 for a HEAD does, and returns the Content-Length S3 gives.
func head(t *testing.T, loc string) int64 {
	t.Helper()
	resp, err := stacktest.HTTPClient(t).Head(loc)
	if err != nil {
		t.Fatalf("HEAD %s: %v", loc, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("HEAD presigned URL: %s", resp.Status)
	}
	return resp.ContentLength
}

// TestPresignedURLExpires: the URL the resolver signs works until the end
// of the life it states (X-Amz-Date + X-Amz-Expires), and then S3 itself
// refuses it as expired: AccessDenied, "Request has expired", as AWS and
// MinIO answer. Any other refusal fails the test, a bad signature
// (SignatureDoesNotMatch) above all; so does a URL that never worked or
// that S3 refused before its stated end. The same URL is fetched until S3
// refuses it, so the test waits for the refusal itself, not for a guess at
// when it comes. A life of 10 s leaves the first fetch far more than a
// loaded machine needs.
func TestPresignedURLExpires(t *testing.T) {
	t.Parallel()
	const life = 10 * time.Second
	w := newWorld(t)
	h := w.handler(t, func(c *lambda.Config) { c.Expiry = life })
	rec := httptest.NewRecorder()
	req, _ := http.NewRequest(http.MethodGet, "/static/cat.jpg", nil)
	h.ServeHTTP(rec, req)
	if rec.Code != 302 {
		t.Fatalf("status %d; want 302", rec.Code)
	}
	loc := rec.Header().Get("Location")
	ends := statedEnd(t, loc)
	if got := ends.Sub(time.Now()); got > life {
		t.Fatalf("the URL ends in %s; want at most the configured %s", got, life)
	}
	worked := 0
	for deadline := ends.Add(30 * time.Second); ; {
		status, body := getBody(t, loc)
		if status == http.StatusOK {
			if !bytes.Equal(body, w.files["cat.jpg"]) {
				t.Fatalf("the presigned URL returned %q; want %q", body, w.files["cat.jpg"])
			}
			if worked++; time.Now().After(deadline) {
				t.Fatalf("S3 still serves the URL %s after its stated end %s", time.Since(ends).Round(time.Millisecond), ends.Format(time.RFC3339))
			}
			time.Sleep(100 * time.Millisecond) // the pace of the polling only
			continue
		}
		refusedAt := time.Now()
		code, message := s3Error(body)
		if status != http.StatusForbidden || code != "AccessDenied" || message != "Request has expired" {
			t.Fatalf("S3 refused the URL with %d %s %q after %d good fetches; want 403 AccessDenied \"Request has expired\"\n%s", status, code, message, worked, body)
		}
		if worked == 0 {
			t.Fatalf("S3 refused the URL as expired at the first fetch; want it served until %s", ends.Format(time.RFC3339))
		}
		// S3 decides before it answers, so by our clock (the same as
		// MinIO's) the refusal came after the URL's stated end.
		if refusedAt.Before(ends) {
			t.Fatalf("S3 refused the URL as expired at %s, before its stated end %s", refusedAt.Format(time.RFC3339Nano), ends.Format(time.RFC3339))
		}
		t.Logf("served %d times, then refused %s after its stated end: %s", worked, refusedAt.Sub(ends).Round(time.Millisecond), body)
		return
	}
}

// statedEnd is when a SigV4 presigned URL says it ends: X-Amz-Date plus
// X-Amz-Expires seconds.
func statedEnd(t *testing.T, loc string) time.Time {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	signed, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		t.Fatalf("X-Amz-Date of %s: %v", loc, err)
	}
	secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil {
		t.Fatalf("X-Amz-Expires of %s: %v", loc, err)
	}
	return signed.Add(time.Duration(secs) * time.Second)
}

// getBody sends a GET to a presigned URL and returns S3's status and body.
func getBody(t *testing.T, loc string) (int, []byte) {
	t.Helper()
	resp, err := stacktest.HTTPClient(t).Get(loc) // trusts AWS_CA_BUNDLE, as over TLS
	if err != nil {
		t.Fatalf("GET %s: %v", loc, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", loc, err)
	}
	return resp.StatusCode, b
}

// s3Error reads the code and message of an S3 error document.
func s3Error(body []byte) (code, message string) {
	var e struct{ Code, Message string }
	if xml.Unmarshal(body, &e) != nil {
		return "", ""
	}
	return e.Code, e.Message
}

// TestVerifyNone presigns without a ledger look-up, so without a version:
// the URL reads the current object, which needs the resolver's
// s3:GetObject (a versioned URL needs only s3:GetObjectVersion on AWS).
// An unknown name is redirected too, and S3 answers it as AWS does to a
// caller without s3:ListBucket: 403.
func TestVerifyNone(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	h := w.handler(t, func(c *lambda.Config) { c.Verify = false })
	for path, want := range map[string]int{"/static/cat.jpg": 302, "/static/never-uploaded.jpg": 302, "/static/../x": 400} {
		rec := httptest.NewRecorder()
		req := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}, Header: http.Header{}}
		h.ServeHTTP(rec, req.WithContext(context.Background()))
		if rec.Code != want {
			t.Errorf("%s: status %d; want %d", path, rec.Code, want)
		}
		loc := rec.Header().Get("Location")
		switch path {
		case "/static/cat.jpg":
			if strings.Contains(loc, "versionId=") {
				t.Errorf("%s: Location %q names a version without a ledger", path, loc)
			}
			if got := fetch(t, loc); !bytes.Equal(got, w.files["cat.jpg"]) {
				t.Errorf("%s: the presigned URL gave %q", path, got)
			}
		case "/static/never-uploaded.jpg":
			if got := stacktest.StatusOf(t, http.MethodGet, loc); got != http.StatusForbidden {
				t.Errorf("%s: S3 answered %d; want 403, as AWS does without s3:ListBucket", path, got)
			}
		}
	}
}

// TestLocalHTTPFace serves the handler over real HTTP on loopback, as
// offload-resolver --listen does, and sends raw request lines: an encoded
// slash next to bytes that need escaping must not become a real slash.
func TestLocalHTTPFace(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	srv := httptest.NewServer(w.handler(t, nil))
	defer srv.Close()
	for target, want := range map[string]int{
		"/static/cat.jpg":                            302,
		"/static/2026/caf%C3%A9%20au%20lait.jpg":     302,
		"/static/2026%2fcaf%C3%A9%20au%20lait.jpg":   400,
		"/static/2026\xc3\xa9%2fcaf\xc3\xa9.jpg":     400,
		"/static/..%2f..%2fetc%2fpasswd":             400,
		"/static/cat.jpg?download=1&x=https://evil/": 302,
	} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n", target)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", target, err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %q: status %d; want %d", target, resp.StatusCode, want)
		}
		if loc := resp.Header.Get("Location"); loc != "" {
			w.checkLocation(t, target, loc)
		}
	}
}

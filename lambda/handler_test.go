package lambda

import (
	"bytes"
	"context"
	"errors"
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
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
)

const offlineEndpoint = "http://127.0.0.1:9000" // presigning is offline; nothing is sent

// offlineHandler presigns with static credentials and no ledger: pure logic.
// Its log goes to logs (nil: discarded).
func offlineHandler(tb testing.TB, creds aws.CredentialsProvider, logs io.Writer) *Handler {
	tb.Helper()
	if logs == nil {
		logs = io.Discard
	}
	c := s3.New(s3.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: aws.String(offlineEndpoint), UsePathStyle: true})
	h, err := NewHandler(Config{Mapping: offload.DefaultMapping, Bucket: "bucket", Logger: slog.New(slog.NewTextHandler(logs, nil))},
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
	h := FunctionURLHandler(offlineHandler(f, nil, nil))
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

// urlEnd is when a presigned URL stops working: X-Amz-Date + X-Amz-Expires.
func urlEnd(t *testing.T, location string) (signedAt time.Time, life int, end time.Time) {
	t.Helper()
	u, err := url.Parse(location)
	if err != nil {
		t.Fatalf("Location %q: %v", location, err)
	}
	signedAt, err = time.Parse("20060102T150405Z", u.Query().Get("X-Amz-Date"))
	if err != nil {
		t.Fatalf("X-Amz-Date in %q: %v", location, err)
	}
	life, err = strconv.Atoi(u.Query().Get("X-Amz-Expires"))
	if err != nil {
		t.Fatalf("X-Amz-Expires in %q: %v", location, err)
	}
	return signedAt, life, signedAt.Add(time.Duration(life) * time.Second)
}

func TestExpiryClampedToCredentials(t *testing.T) {
	for _, left := range []time.Duration{time.Hour, 6 * time.Minute, 30 * time.Second} {
		credsEnd := time.Now().Add(left).Truncate(time.Second)
		h := offlineHandler(t, expiringCreds(credsEnd), nil)
		rec := &recorder{header: http.Header{}}
		req, _ := http.NewRequest(http.MethodGet, "/static/cat.jpg", nil)
		h.ServeHTTP(rec, req)
		if left == 30*time.Second { // too close to the end
			if rec.status != http.StatusServiceUnavailable || rec.header.Get("Retry-After") == "" {
				t.Errorf("credentials ending in %s: status %d, Retry-After %q; want 503 with Retry-After", left, rec.status, rec.header.Get("Retry-After"))
			}
			continue
		}
		_, life, end := urlEnd(t, rec.header.Get("Location"))
		switch left {
		case time.Hour:
			if life != 900 {
				t.Errorf("credentials ending in %s: X-Amz-Expires=%d; want the configured 900", left, life)
			}
		default:
			// Ends with the credentials less the 1 min margin, to the second.
			if want := credsEnd.Add(-time.Minute); end.After(want) || end.Before(want.Add(-time.Second)) {
				t.Errorf("credentials ending at %s: URL ends at %s; want %s", credsEnd, end, want)
			}
		}
	}
}

// TestURLsSignedOncePerWindow: requests for one object within a signing
// window get the same URL, signed at the window's start; the next window
// signs a new one; another object or another download name gets its own.
// The browser may keep a redirect for at most a fifth of the URL's life left.
func TestURLsSignedOncePerWindow(t *testing.T) {
	h := offlineHandler(t, nil, nil)
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	get := func(at time.Duration, target string) (location string, maxAge int) {
		t.Helper()
		h.now = func() time.Time { return base.Add(at) }
		rec := &recorder{header: http.Header{}}
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		h.ServeHTTP(rec, req)
		if rec.status != http.StatusFound {
			t.Fatalf("%s at +%s: status %d", target, at, rec.status)
		}
		cc := rec.header.Get("Cache-Control")
		maxAge, err := strconv.Atoi(strings.TrimPrefix(cc, "private, max-age="))
		if err != nil {
			t.Fatalf("Cache-Control %q", cc)
		}
		return rec.header.Get("Location"), maxAge
	}
	first, age := get(10*time.Second, "/static/cat.jpg")
	signed, life, end := urlEnd(t, first)
	if !signed.Equal(base) || life != 900 {
		t.Errorf("signed at %s for %d s; want the window's start %s, 900 s", signed, life, base)
	}
	if left := end.Sub(base.Add(10 * time.Second)); age != int(left/5/time.Second) {
		t.Errorf("max-age %d; want %d (a fifth of the %s left)", age, int(left/5/time.Second), left)
	}
	if again, _ := get(59*time.Second, "/static/cat.jpg"); again != first {
		t.Errorf("same window, new URL:\n%s\n%s", first, again)
	}
	if next, _ := get(61*time.Second, "/static/cat.jpg"); next == first {
		t.Errorf("next window reused the old URL")
	} else if s, _, _ := urlEnd(t, next); !s.Equal(base.Add(time.Minute)) {
		t.Errorf("next window signed at %s; want %s", s, base.Add(time.Minute))
	}
	other, _ := get(62*time.Second, "/static/dog.jpg")
	download, _ := get(63*time.Second, "/static/dog.jpg?download=1")
	if other == download || !strings.Contains(download, "response-content-disposition") {
		t.Errorf("download shares the plain URL or lacks its disposition:\n%s\n%s", other, download)
	}
}

// TestWindowCacheBounded: each of the window cache's maps holds at most
// maxCachedEntries, whatever names arrive; an answer from a window that has
// passed is dropped; a new window starts over.
func TestWindowCacheBounded(t *testing.T) {
	var c windowCache
	w0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i := range 3 * maxCachedEntries {
		k := "original/" + strconv.Itoa(i) + ".jpg"
		c.putRecord(w0, k, recorded{versionID: "v"})
		c.putMiss(w0, w0.Add(notFoundTTL), k+".missing")
		c.putURL(w0, urlCacheKey{target: target{key: k}}, "https://example/"+k)
	}
	if len(c.records) > maxCachedEntries || len(c.misses) > maxCachedEntries || len(c.urls) > maxCachedEntries {
		t.Errorf("%d records, %d misses, %d URLs; want at most %d each", len(c.records), len(c.misses), len(c.urls), maxCachedEntries)
	}
	last := "original/" + strconv.Itoa(3*maxCachedEntries-1) + ".jpg"
	if _, found, cached := c.answer(w0, w0, last); !found || !cached {
		t.Errorf("the last record put is not cached: found %v, cached %v", found, cached)
	}
	w1 := w0.Add(time.Minute)
	c.putRecord(w1, "original/new.jpg", recorded{})
	c.putRecord(w0, "original/late.jpg", recorded{}) // read in a window that has passed
	if _, _, cached := c.answer(w1, w1, last); cached {
		t.Errorf("an answer from the previous window is still cached")
	}
	if _, _, cached := c.answer(w1, w1, "original/late.jpg"); cached {
		t.Errorf("an answer read in a window that had passed was cached")
	}
	if len(c.records) != 1 || len(c.misses) != 0 || len(c.urls) != 0 {
		t.Errorf("new window: %d records, %d misses, %d URLs; want 1, 0, 0", len(c.records), len(c.misses), len(c.urls))
	}
	// A slow "not found" that ends after a concurrent request found the
	// item does not hide it.
	c.putMiss(w1, w1.Add(notFoundTTL), "original/new.jpg")
	if _, found, _ := c.answer(w1, w1, "original/new.jpg"); !found {
		t.Errorf("a miss put after the record hides it")
	}
}

func TestSignWindow(t *testing.T) {
	for expiry, want := range map[time.Duration]time.Duration{
		15 * time.Minute: time.Minute, time.Hour: time.Minute, time.Minute: 4 * time.Second, 5 * time.Second: time.Second,
	} {
		if got := signWindow(expiry); got != want {
			t.Errorf("signWindow(%s) = %s; want %s", expiry, got, want)
		}
	}
}

func TestLogsCarryNoSecrets(t *testing.T) {
	var logs bytes.Buffer
	h := offlineHandler(t, nil, nil)
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

// BenchmarkRedirect is the hot path without the ledger: map, look up the
// window's URL, headers. The same object each time, so after the first
// request it is served from the window's cache.
func BenchmarkRedirect(b *testing.B) {
	h := offlineHandler(b, nil, nil)
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

// refusingLedger answers every look-up with an error, so a request that
// reaches it gets a 503.
type refusingLedger struct{}

func (refusingLedger) GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return nil, errors.New("the ledger was asked")
}

// BenchmarkRedirectLedgerCached is BenchmarkRedirect with the ledger
// look-up on, its answer already read in the window: what every request
// but the first for an object costs in a window. The clock is fixed, so
// the window never ends; a request that asks the ledger fails it.
func BenchmarkRedirectLedgerCached(b *testing.B) {
	h := offlineHandler(b, nil, nil)
	h.ledger, h.cfg.Table = refusingLedger{}, "ledger"
	at := time.Date(2026, 11, 25, 10, 0, 10, 0, time.UTC)
	h.now = func() time.Time { return at }
	h.cache.putRecord(at.Truncate(h.window), "original/2026/11/cat.jpg", recorded{versionID: "v1", contentType: "image/jpeg"})
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

// BenchmarkRedirectNewObject: every request for an object not asked for
// before in the window, so each one is presigned.
func BenchmarkRedirectNewObject(b *testing.B) {
	h := offlineHandler(b, nil, nil)
	reqs := make([]*http.Request, 4096)
	for i := range reqs {
		reqs[i], _ = http.NewRequest(http.MethodGet, "/static/2026/11/cat-"+strconv.Itoa(i)+".jpg", nil)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%len(reqs) == 0 {
			h.cache = windowCache{} // forget, as a new window would
		}
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, reqs[i%len(reqs)])
		if rec.status != http.StatusFound {
			b.Fatalf("status %d", rec.status)
		}
		i++
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

// TestHostileURLs: requests crafted to escape the prefix, smuggle a slash
// or a header, or confuse the decoder are refused (no Location, a log line
// with the status); the rest redirect to exactly their own key.
func TestHostileURLs(t *testing.T) {
	var logs bytes.Buffer
	inner := offlineHandler(t, nil, &logs)
	h := FunctionURLHandler(inner)
	long := strings.Repeat("a", 256)
	for _, tt := range []struct {
		rawPath, rawQuery string
		status            int
		key               string // for a 302
	}{
		{"/static/../etc/passwd", "", 400, ""},
		{"/static/%2e%2e/%2e%2e/etc/passwd", "", 400, ""},
		{"/static/.%2e/x.jpg", "", 400, ""},
		{"/static/%2E%2E%2Fsecret.jpg", "", 400, ""},
		{"/static/a%2fb.jpg", "", 400, ""},
		{"/static/a%5cb.jpg", "", 400, ""},
		{"/static/%00.jpg", "", 400, ""},
		{"/static/x.jpg%00.png", "", 400, ""},
		{"/static/a%0d%0aSet-Cookie:%20x=1", "", 400, ""},
		{"/static/%C0%AE%C0%AE/x.jpg", "", 400, ""}, // overlong UTF-8 for ".."
		{"/static/%EF%BF%BF.jpg", "", 400, ""},
		{"/static/%zz.jpg", "", 400, ""},
		{"/static//x.jpg", "", 400, ""},
		{"/static/", "", 400, ""},
		{"/static/" + long + ".jpg", "", 400, ""},
		{"/static/" + strings.Repeat("d/", 520) + "x.jpg", "", 400, ""},
		{"/static/x.jpg#frag", "", 400, ""},
		{"/static/x?.jpg", "", 400, ""},
		{"//evil.example/static/x.jpg", "", 400, ""},
		{"/static", "", 404, ""},
		{"/STATIC/x.jpg", "", 404, ""},
		{"/static%2fx.jpg", "", 404, ""},
		{"/static/x.jpg", "redirect=https://evil.example/&next=//evil", 302, "original/x.jpg"},
		{"/static/%252e%252e/x.jpg", "", 302, "original/%2e%2e/x.jpg"}, // decoded once: a literal name
		{"/static/caf%C3%A9.jpg", "", 302, "original/caf\u00e9.jpg"},
		{"/static/cafe%CC%81.jpg", "", 302, "original/cafe\u0301.jpg"},
		{"/static/-rf%20--help.jpg", "", 302, "original/-rf --help.jpg"},
	} {
		logs.Reset()
		ev := events.LambdaFunctionURLRequest{RawPath: tt.rawPath, RawQueryString: tt.rawQuery}
		ev.RequestContext.HTTP.Method = "GET"
		resp, err := h(context.Background(), ev)
		if err != nil {
			t.Fatalf("%q: handler error: %v", tt.rawPath, err)
		}
		name := truncate(tt.rawPath, 60)
		if resp.StatusCode != tt.status {
			t.Errorf("%q: status %d; want %d", name, resp.StatusCode, tt.status)
			continue
		}
		if !strings.Contains(logs.String(), "status="+strconv.Itoa(tt.status)) {
			t.Errorf("%q: no log line with the status:\n%s", name, logs.String())
		}
		loc := resp.Headers["Location"]
		if tt.status != 302 {
			if loc != "" {
				t.Errorf("%q: refused with Location %q", name, loc)
			}
			continue
		}
		u, err := url.Parse(loc)
		if err != nil || u.Scheme+"://"+u.Host != offlineEndpoint || u.Path != "/bucket/"+tt.key {
			t.Errorf("%q: Location %q; want the key %q on %s", name, loc, tt.key, offlineEndpoint)
		}
	}
}

func TestInlineType(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string // "" for not safe
	}{
		{"image/jpeg", "image/jpeg"},
		{"IMAGE/PNG", "image/png"},
		{"image/webp; q=1", "image/webp"}, // parameters never reach the browser
		{"video/mp4", "video/mp4"},
		{"application/pdf", "application/pdf"},
		{"image/svg+xml", ""}, // SVG runs script
		{"image/svg", ""},
		{"image/svg+xml; charset=utf-8", ""},
		{"image/x-something+xml", ""},
		{"text/html", ""},
		{"text/html; charset=utf-8", ""},
		{"application/xhtml+xml", ""},
		{"text/xml", ""},
		{"application/javascript", ""},
		{"text/plain", ""},
		{"application/octet-stream", ""},
		{"image/jpeg, text/html", ""}, // a browser would take the last type
		{"image/", ""},
		{"image", ""},
		{"", ""},
	} {
		got, ok := inlineType(tt.in)
		if !ok {
			got = ""
		}
		if got != tt.want {
			t.Errorf("inlineType(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}

// TestUnsafeTypesAreAttachments: without a ledger the type comes from the
// name; whatever is not an image, a video or a PDF is presigned as an
// octet-stream attachment, so it never renders in the bucket's origin.
func TestUnsafeTypesAreAttachments(t *testing.T) {
	h := offlineHandler(t, nil, nil)
	for _, tt := range []struct {
		path, contentType string
		attachment        bool
	}{
		{"/static/cat.jpg", "image/jpeg", false},
		{"/static/cat.jpg?download=1", "image/jpeg", true},
		{"/static/doc.pdf", "application/pdf", false},
		{"/static/logo.svg", "application/octet-stream", true},
		{"/static/page.html", "application/octet-stream", true},
		{"/static/page.htm", "application/octet-stream", true},
		{"/static/app.js", "application/octet-stream", true},
		{"/static/notes.txt", "application/octet-stream", true},
		{"/static/no-extension", "application/octet-stream", true},
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			rec := &recorder{header: http.Header{}}
			req, _ := http.NewRequest(method, tt.path, nil)
			h.ServeHTTP(rec, req)
			if rec.status != http.StatusFound {
				t.Fatalf("%s %s: status %d", method, tt.path, rec.status)
			}
			u, _ := url.Parse(rec.header.Get("Location"))
			q := u.Query()
			if got := q.Get("response-content-type"); got != tt.contentType {
				t.Errorf("%s %s: response-content-type %q; want %q", method, tt.path, got, tt.contentType)
			}
			if got := q.Get("response-content-disposition"); strings.HasPrefix(got, "attachment") != tt.attachment {
				t.Errorf("%s %s: response-content-disposition %q; want attachment %v", method, tt.path, got, tt.attachment)
			}
		}
	}
}

// TestHeadSignedApart: a HEAD gets its own URL, never the GET one from the
// window's cache (S3 checks the method as part of the signature).
func TestHeadSignedApart(t *testing.T) {
	h := offlineHandler(t, nil, nil)
	h.now = func() time.Time { return time.Date(2026, 11, 25, 10, 0, 10, 0, time.UTC) }
	loc := map[string]string{}
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodGet, http.MethodHead} {
		rec := &recorder{header: http.Header{}}
		req, _ := http.NewRequest(method, "/static/cat.jpg", nil)
		h.ServeHTTP(rec, req)
		if rec.status != http.StatusFound {
			t.Fatalf("%s: status %d", method, rec.status)
		}
		if prev, ok := loc[method]; ok && prev != rec.header.Get("Location") {
			t.Errorf("%s: a second URL in one window", method)
		}
		loc[method] = rec.header.Get("Location")
	}
	if loc[http.MethodGet] == loc[http.MethodHead] {
		t.Errorf("HEAD was answered with the GET URL %s", loc[http.MethodGet])
	}
}

// stuckLedger is a ledger that never answers: it waits for the deadline it
// was given and reports it.
type stuckLedger struct{ deadline chan time.Duration }

func (s stuckLedger) GetItem(ctx context.Context, _ *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Time{}
	}
	s.deadline <- time.Until(d)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestLedgerDeadline: a ledger that hangs costs at most ledgerTimeout, well
// inside the function's 5 s, and the visitor gets a 503 with Retry-After.
func TestLedgerDeadline(t *testing.T) {
	h := offlineHandler(t, nil, nil)
	stuck := stuckLedger{deadline: make(chan time.Duration, 2)}
	h.ledger, h.cfg.Table = stuck, "ledger"

	// The deadline the real constant gives, without waiting it out.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/static/cat.jpg", nil)
	given := make(chan time.Duration, 1)
	go func() { given <- <-stuck.deadline; cancel() }()
	h.ServeHTTP(&recorder{header: http.Header{}}, req)
	if left := <-given; left <= 0 || left > ledgerTimeout {
		t.Errorf("the ledger call had %s to answer; want at most %s", left, ledgerTimeout)
	}
	if ledgerTimeout > 5*time.Second/2 {
		t.Errorf("ledgerTimeout %s; want it well inside the template's 5 s Timeout", ledgerTimeout)
	}

	h.ledgerTimeout = 100 * time.Millisecond
	rec := &recorder{header: http.Header{}}
	req, _ = http.NewRequest(http.MethodGet, "/static/cat.jpg", nil)
	start := time.Now()
	h.ServeHTTP(rec, req)
	took := time.Since(start)
	if left := <-stuck.deadline; left <= 0 || left > h.ledgerTimeout {
		t.Errorf("the ledger call had %s to answer; want at most %s", left, h.ledgerTimeout)
	}
	if rec.status != http.StatusServiceUnavailable || rec.header.Get("Retry-After") != retryAfter {
		t.Errorf("stuck ledger: status %d, Retry-After %q; want 503 and %q", rec.status, rec.header.Get("Retry-After"), retryAfter)
	}
	if took > time.Second {
		t.Errorf("stuck ledger answered after %s; want about %s", took, h.ledgerTimeout)
	}
}

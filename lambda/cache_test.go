package lambda_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
	"github.com/photosleeve/offload/lambda"
)

// ledgerProxy is a reverse proxy in front of the stack's DynamoDB that
// counts the GetItem requests reaching it. While refuse is set it answers
// them itself, as DynamoDB answers a caller its policy does not allow.
type ledgerProxy struct {
	endpoint string
	getItems atomic.Int64
	refuse   atomic.Bool
}

func newLedgerProxy(t *testing.T, upstream string) *ledgerProxy {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &ledgerProxy{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = stacktest.HTTPClient(t).Transport
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") == "DynamoDB_20120810.GetItem" {
			p.getItems.Add(1)
			if p.refuse.Load() {
				w.Header().Set("Content-Type", "application/x-amz-json-1.0")
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, `{"__type":"com.amazon.coral.service#AccessDeniedException","message":"not authorized to perform: dynamodb:GetItem"}`)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.endpoint = srv.URL
	return p
}

// clock is a settable time for the handler, safe to read from many
// requests at once.
type clock struct{ ns atomic.Int64 }

func newClock(at time.Time) *clock {
	c := &clock{}
	c.set(at)
	return c
}

func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(at time.Time) { c.ns.Store(at.UnixNano()) }

// cachingHandler is the resolver as deployed (ledger look-ups, default
// expiry, so 1 min signing windows), reading the ledger at ledgerEndpoint
// and the time from c.
func (w *world) cachingHandler(t *testing.T, ledgerEndpoint string, c *clock) *lambda.Handler {
	t.Helper()
	h, err := lambda.NewHandler(lambda.Config{
		Mapping: offload.Mapping{URLPrefix: "/static/", KeyPrefix: w.prefix},
		Bucket:  w.st.Bucket, Table: w.st.Table, Verify: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, s3.NewPresignClient(w.resolverS3), w.st.DynamoDBAt(t, ledgerEndpoint), nil)
	if err != nil {
		t.Fatal(err)
	}
	lambda.SetClock(h, c.now)
	return h
}

// get sends one request to h and returns the status and Location.
func get(h http.Handler, method, target string) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Code, rec.Header().Get("Location")
}

// windowStart is the start of the current 1 min signing window: URLs
// signed at it are valid now, so S3 serves them.
func windowStart() time.Time { return time.Now().Truncate(time.Minute) }

// TestLedgerAnswerCachedForWindow: the ledger is asked once per object and
// signing window. Within the window every request (GET, HEAD, a download)
// is answered from memory with the recorded version pinned and the type
// judged as before; an operator's erasure of the item is seen at the next
// window, so a cached answer outlives it by at most one window.
func TestLedgerAnswerCachedForWindow(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.enableVersioning(t)
	data := []byte("\xff\xd8\xff cached")
	version := w.upload(t, "cached.jpg", data, "image/jpeg")
	w.upload(t, "cached.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`), "image/svg+xml")
	ledger := newLedgerProxy(t, w.st.DynamoDBEndpoint)
	start := windowStart()
	c := newClock(start.Add(10 * time.Second))
	h := w.cachingHandler(t, ledger.endpoint, c)

	status, first := get(h, http.MethodGet, "/static/cached.jpg")
	if status != http.StatusFound {
		t.Fatalf("first GET: status %d; want 302", status)
	}
	if n := ledger.getItems.Load(); n != 1 {
		t.Fatalf("first GET: %d GetItem requests; want 1", n)
	}
	c.set(start.Add(20 * time.Second))
	for _, tt := range []struct {
		method, target string
		same           bool // the first request's URL
	}{
		{http.MethodGet, "/static/cached.jpg", true},
		{http.MethodHead, "/static/cached.jpg", false},
		{http.MethodGet, "/static/cached.jpg?download=1", false},
	} {
		status, loc := get(h, tt.method, tt.target)
		if status != http.StatusFound {
			t.Fatalf("%s %s: status %d; want 302", tt.method, tt.target, status)
		}
		if (loc == first) != tt.same {
			t.Errorf("%s %s: Location %q; the first GET's %q", tt.method, tt.target, loc, first)
		}
		u, _ := url.Parse(loc)
		if got := u.Query().Get("versionId"); got != version {
			t.Errorf("%s %s: versionId %q from the cached answer; want the recorded %q", tt.method, tt.target, got, version)
		}
	}
	if n := ledger.getItems.Load(); n != 1 {
		t.Errorf("after 4 requests for one object in one window: %d GetItem requests; want 1", n)
	}
	if got := fetch(t, first); string(got) != string(data) {
		t.Errorf("the cached answer's URL gave %q; want %q", got, data)
	}

	// The type allowlist applies to a cached answer too.
	for i := range 2 {
		status, loc := get(h, http.MethodGet, "/static/cached.svg")
		u, _ := url.Parse(loc)
		if q := u.Query(); status != http.StatusFound || q.Get("response-content-type") != "application/octet-stream" ||
			!strings.HasPrefix(q.Get("response-content-disposition"), "attachment") {
			t.Errorf("SVG, request %d: status %d, Location %q; want 302 to an octet-stream attachment", i+1, status, loc)
		}
	}
	if n := ledger.getItems.Load(); n != 2 {
		t.Errorf("after two requests for a second object: %d GetItem requests in all; want 2", n)
	}

	// An operator erases the item: this window still redirects from
	// memory, the next one asks the ledger and answers 404.
	if _, err := w.db.DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String(w.st.Table),
		Key: map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: w.prefix + "cached.jpg"}}}); err != nil {
		t.Fatal(err)
	}
	c.set(start.Add(59 * time.Second))
	if status, loc := get(h, http.MethodGet, "/static/cached.jpg"); status != http.StatusFound || loc != first {
		t.Errorf("erased, same window: status %d, Location %q; want 302 to %q, from memory", status, loc, first)
	}
	for _, at := range []time.Duration{time.Minute, time.Minute + lambda.NotFoundTTL/2} {
		c.set(start.Add(at))
		if status, _ := get(h, http.MethodGet, "/static/cached.jpg"); status != http.StatusNotFound {
			t.Errorf("erased, next window, +%s: status %d; want 404", at, status)
		}
	}
	if n := ledger.getItems.Load(); n != 3 {
		t.Errorf("the next window: %d GetItem requests in all; want 3 (one more look-up)", n)
	}
}

// TestLedgerNotFoundCachedBriefly: a key the ledger does not know is
// answered 404 from memory for NotFoundTTL only; a file recorded meanwhile
// resolves at the first request after it, and is then cached.
func TestLedgerNotFoundCachedBriefly(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ledger := newLedgerProxy(t, w.st.DynamoDBEndpoint)
	at := windowStart().Add(10 * time.Second)
	c := newClock(at)
	h := w.cachingHandler(t, ledger.endpoint, c)

	for _, tt := range []struct {
		after    time.Duration
		record   bool // record the file before this request
		status   int
		getItems int64 // in all, after this request
	}{
		{0, false, http.StatusNotFound, 1},
		{lambda.NotFoundTTL / 2, false, http.StatusNotFound, 1},
		{lambda.NotFoundTTL - time.Millisecond, true, http.StatusNotFound, 1}, // recorded, still the cached miss
		{lambda.NotFoundTTL, false, http.StatusFound, 2},
		{lambda.NotFoundTTL + time.Second, false, http.StatusFound, 2},
	} {
		if tt.record {
			w.upload(t, "late.jpg", []byte("\xff\xd8\xff late"), "image/jpeg")
		}
		c.set(at.Add(tt.after))
		status, _ := get(h, http.MethodGet, "/static/late.jpg")
		if n := ledger.getItems.Load(); status != tt.status || n != tt.getItems {
			t.Errorf("+%s: status %d after %d GetItem requests; want %d after %d", tt.after, status, n, tt.status, tt.getItems)
		}
	}
}

// TestLedgerErrorsNotCached: a ledger that refuses or does not answer in
// time gets a 503, and the next request asks again; once the ledger
// answers, the answer is cached.
func TestLedgerErrorsNotCached(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	for _, tt := range []struct {
		name  string
		fault func(*ledgerProxy, *stacktest.Proxy, bool)
	}{
		{"refused", func(l *ledgerProxy, _ *stacktest.Proxy, on bool) { l.refuse.Store(on) }},
		{"stalled past the look-up's deadline", func(_ *ledgerProxy, toxi *stacktest.Proxy, on bool) {
			if on {
				toxi.AddToxic("stall", "latency", "downstream", map[string]any{"latency": 10000})
			} else {
				toxi.RemoveToxic("stall")
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			toxi := w.st.Proxy(t, w.st.DynamoDBEndpoint)
			ledger := newLedgerProxy(t, toxi.Endpoint)
			h := w.cachingHandler(t, ledger.endpoint, newClock(windowStart().Add(10*time.Second)))
			tt.fault(ledger, toxi, true)
			for i := range 2 {
				before := ledger.getItems.Load()
				if status, _ := get(h, http.MethodGet, "/static/cat.jpg"); status != http.StatusServiceUnavailable {
					t.Errorf("faulty ledger, request %d: status %d; want 503", i+1, status)
				}
				if n := ledger.getItems.Load(); n == before {
					t.Errorf("faulty ledger, request %d: no GetItem request; want the ledger asked again", i+1)
				}
			}
			tt.fault(ledger, toxi, false)
			before := ledger.getItems.Load()
			for i := range 2 {
				if status, _ := get(h, http.MethodGet, "/static/cat.jpg"); status != http.StatusFound {
					t.Errorf("ledger back, request %d: status %d; want 302", i+1, status)
				}
			}
			if n := ledger.getItems.Load() - before; n != 1 {
				t.Errorf("ledger back, two requests: %d GetItem requests; want 1", n)
			}
		})
	}
}

// TestLedgerCacheConcurrent: the local HTTP face serves many requests at
// once (run with -race). Rounds of concurrent requests, with the clock
// fixed in a round and moved between rounds (within the miss TTL, past
// it, into the next window): every answer is right, and a key is looked
// up at most once per connection and round.
func TestLedgerCacheConcurrent(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.enableVersioning(t)
	version := w.upload(t, "busy.jpg", []byte("\xff\xd8\xff busy"), "image/jpeg")
	ledger := newLedgerProxy(t, w.st.DynamoDBEndpoint)
	start := windowStart()
	c := newClock(start)
	srv := httptest.NewServer(w.cachingHandler(t, ledger.endpoint, c))
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	const conns, perConn = 8, 10
	want := map[string]int{"/static/busy.jpg": http.StatusFound, "/static/cat.jpg": http.StatusFound, "/static/missing.jpg": http.StatusNotFound}
	rounds := []time.Duration{10 * time.Second, 10*time.Second + lambda.NotFoundTTL/2, 12 * time.Second, 70 * time.Second}
	for _, at := range rounds {
		c.set(start.Add(at))
		var wg sync.WaitGroup
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perConn {
					for path, status := range want {
						resp, err := client.Get(srv.URL + path)
						if err != nil {
							t.Error(err)
							return
						}
						resp.Body.Close()
						if resp.StatusCode != status {
							t.Errorf("+%s %s: status %d; want %d", at, path, resp.StatusCode, status)
						}
						if path == "/static/busy.jpg" {
							u, _ := url.Parse(resp.Header.Get("Location"))
							if got := u.Query().Get("versionId"); got != version {
								t.Errorf("+%s %s: versionId %q; want %q", at, path, got, version)
							}
						}
					}
				}
			}()
		}
		wg.Wait()
	}
	if n, most := ledger.getItems.Load(), int64(len(rounds)*conns*len(want)); n > most {
		t.Errorf("%d GetItem requests for %d requests; want at most %d", n, len(rounds)*conns*perConn*len(want), most)
	}
}

package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/photosleeve/offload/infra/local/loopback"
)

// counter is a reverse proxy that counts the requests passing through it,
// by S3 operation or DynamoDB target. It is used for an extra, untimed run
// of each tool: the timed runs talk to MinIO directly.
type counter struct {
	Endpoint string
	mu       sync.Mutex
	ops      map[string]int
	started  map[string]time.Time // first upload request per object path
	// partBytes sums the declared body sizes of the UploadPart requests,
	// partAccepted those S3 answered 200 (the resume scenario).
	partBytes    atomic.Int64
	partAccepted atomic.Int64
	srv          *http.Server
}

// statusWriter keeps the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 || w.status < 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// counters are a counting proxy in front of S3 and one in front of
// DynamoDB, for the untimed runs that count a tool's requests.
type counters struct{ s3, db *counter }

func (b *bench) newCounters() (*counters, error) {
	s3Count, err := newCounter(b.env.endpoint, b.env.ca)
	if err != nil {
		return nil, err
	}
	dbCount, err := newCounter(os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"), b.env.ca)
	if err != nil {
		s3Count.close()
		return nil, err
	}
	return &counters{s3: s3Count, db: dbCount}, nil
}

func (c *counters) close() {
	c.s3.close()
	c.db.close()
}

// count runs fn with b's S3 and DynamoDB endpoints pointed at the proxies,
// and returns the requests it made to both, by operation.
func (c *counters) count(b *bench, fn func() error) (map[string]int, error) {
	b.s3Endpoint, b.dbEndpoint = c.s3.Endpoint, c.db.Endpoint
	err := fn()
	b.s3Endpoint, b.dbEndpoint = b.env.endpoint, os.Getenv("AWS_ENDPOINT_URL_DYNAMODB")
	counts := c.s3.take()
	for k, n := range c.db.take() {
		counts[k] += n
	}
	return counts, err
}

// newCounter proxies to upstream. For an https upstream it serves TLS with
// the stack's own server certificate (next to the CA file), so the tools
// trust it exactly as they trust MinIO.
func newCounter(upstream, caFile string) (*counter, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	c := &counter{ops: map[string]int{}, started: map[string]time.Time{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 256
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if target.Scheme == "https" {
		if err := loopback.TrustCA(transport, caFile); err != nil {
			return nil, err
		}
		dir := filepath.Dir(caFile)
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "public.crt"), filepath.Join(dir, "private.key"))
		if err != nil {
			return nil, err
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		scheme = "https"
	}
	proxy.Transport = transport
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := operation(r)
		c.mu.Lock()
		c.ops[op]++
		if _, seen := c.started[r.URL.Path]; !seen && (op == "PutObject" || op == "CreateMultipartUpload") {
			c.started[r.URL.Path] = time.Now()
		}
		c.mu.Unlock()
		if op != "UploadPart" {
			proxy.ServeHTTP(w, r)
			return
		}
		c.partBytes.Add(r.ContentLength)
		sw := &statusWriter{ResponseWriter: w}
		proxy.ServeHTTP(sw, r)
		if sw.status == http.StatusOK {
			c.partAccepted.Add(r.ContentLength)
		}
	})}
	go c.srv.Serve(ln)
	c.Endpoint = scheme + "://" + ln.Addr().String()
	return c, nil
}

// operation names the request: a DynamoDB target, or the S3 operation its
// method and query say.
func operation(r *http.Request) string {
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		return "DynamoDB " + t[strings.LastIndex(t, ".")+1:]
	}
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case r.Method == http.MethodPut:
		return "PutObject"
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodPost && q.Has("delete"):
		return "DeleteObjects"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case r.Method == http.MethodDelete:
		return "DeleteObject"
	case r.Method == http.MethodHead:
		return "HeadObject"
	case r.Method == http.MethodGet && q.Has("uploads"):
		return "ListMultipartUploads"
	case r.Method == http.MethodGet && q.Has("versions"):
		return "ListObjectVersions"
	case r.Method == http.MethodGet && (q.Has("list-type") || strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0):
		return "ListObjects"
	case r.Method == http.MethodGet:
		return "GetObject"
	}
	return r.Method + " " + r.URL.RawQuery
}

// take returns the counts so far and starts again from zero.
func (c *counter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.ops
	c.ops = map[string]int{}
	return out
}

// uploadStarted returns when the first upload request for the object path
// ("/bucket/key") arrived.
func (c *counter) uploadStarted(path string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.started[path]
	return t, ok
}

func (c *counter) close() { c.srv.Close() }

// perFile formats counts as requests per file, most frequent first.
func perFile(counts map[string]int, files int) string {
	type kv struct {
		k string
		n int
	}
	var all []kv
	total := 0
	for k, n := range counts {
		all = append(all, kv{k, n})
		total += n
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].k < all[j].k })
	parts := []string{fmt.Sprintf("%.2f", float64(total)/float64(files))}
	for _, e := range all {
		parts = append(parts, fmt.Sprintf("%s %.2f", e.k, float64(e.n)/float64(files)))
	}
	return parts[0] + " (" + strings.Join(parts[1:], ", ") + ")"
}

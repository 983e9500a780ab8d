package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// siteRegexLocation is what many nginx sites already have: a regex
// location for images. A regex location beats a plain prefix location, so
// unless the fallback's /static/ location is "^~" this one would answer
// for /static/*.jpg and a missing original would be a 404 from disk.
const siteRegexLocation = `        location ~* \.(jpg|jpeg|png|gif)$ {
            expires 30d;
        }`

// TestWebServerFallback checks each web server's fallback on its own, as
// an operator includes it: a present file is served from disk, a missing
// one from the hot cache if the agent put a copy there, else it is sent to
// the resolver with the request's URI and query exactly as the browser sent
// them, and the agent's claim folder and half-written downloads are never
// served. The resolver base is a production-shaped URL that is never
// followed.
func TestWebServerFallback(t *testing.T) {
	stacktest.Require(t) // the web servers come with the stack
	for _, tc := range []struct {
		name, server string
		site         []stacktest.Site
	}{
		{"lighttpd", "lighttpd", nil},
		{"lighttpd with the stat cache off", "lighttpd", []stacktest.Site{{Before: lighttpdStatCacheOff}}},
		{"nginx", "nginx", nil},
		{"nginx with a site regex location before the include", "nginx", []stacktest.Site{{Before: siteRegexLocation}}},
		{"nginx with a site regex location after the include", "nginx", []stacktest.Site{{After: siteRegexLocation}}},
		{"apache2", "apache2", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fallback(t, tc.server, tc.site...)
		})
	}
}

// resolverBase is where the servers under test redirect: production-shaped,
// never followed.
const resolverBase = "https://abc.lambda-url.eu-west-1.on.aws"

// writeFiles writes each file under root/static, folders included.
func writeFiles(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	for rel, data := range files {
		p := filepath.Join(root, "static", filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fallback(t *testing.T, server string, site ...stacktest.Site) {
	const base = resolverBase
	dir := t.TempDir()
	// The hot cache is laid out like the web root: /static/NAME is
	// cache/static/NAME. The agent's downloads in progress sit in
	// cache/.offload-fetch, which no URL may reach.
	webroot, cache := filepath.Join(dir, "www"), filepath.Join(dir, "cache")
	present := map[string][]byte{
		"present.jpg":           randomBytes(3<<10, 4),
		"with space/a b+c.jpg":  randomBytes(1<<10, 5),
		".offload-claim/x.jpg":  []byte("claimed"),
		"写真.jpg":                randomBytes(1<<10, 6),
		"sub/percent%2541.jpg":  randomBytes(1<<10, 7),
		"sub/question?mark.jpg": randomBytes(1<<10, 8),
		"both.jpg":              randomBytes(1<<10, 10),
	}
	cached := map[string][]byte{
		"cached.jpg":                   randomBytes(3<<10, 11),
		"c/with space/a b+c.jpg":       randomBytes(1<<10, 12),
		"with space/only cached+1.jpg": randomBytes(1<<10, 13), // its folder is in the web root too
		"c/写真.jpg":                     randomBytes(1<<10, 14),
		"c/sub/percent%2541.jpg":       randomBytes(1<<10, 15),
		"c/sub/question?mark.jpg":      randomBytes(1<<10, 16),
		"both.jpg":                     randomBytes(1<<10, 17),
		".offload-claim/x.jpg":         []byte("claimed, in the cache"),
		".offload-claim/cached.jpg":    []byte("claimed, only in the cache"),
	}
	writeFiles(t, webroot, present)
	writeFiles(t, cache, cached)
	fetching := []byte("half-written by the agent")
	if err := os.MkdirAll(filepath.Join(cache, ".offload-fetch"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, ".offload-fetch", "x.jpg"), fetching, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := stacktest.FreeAddr(t)
	stacktest.StartWebServer(t, server, webroot, cache, addr, base, site...)
	web := "http://" + addr

	// Present: 200 with the file's bytes, whatever the query; the web
	// root's copy when the cache has one too.
	for target, rel := range map[string]string{
		"/static/present.jpg":                        "present.jpg",
		"/static/present.jpg?download=1":             "present.jpg",
		"/static/with%20space/a%20b+c.jpg?x=%3F&y=1": "with space/a b+c.jpg",
		"/static/%E5%86%99%E7%9C%9F.jpg":             "写真.jpg",
		"/static/sub/percent%252541.jpg":             "sub/percent%2541.jpg",
		"/static/sub/question%3Fmark.jpg?q=1":        "sub/question?mark.jpg",
		"/static/both.jpg":                           "both.jpg",
	} {
		resp, body := do(t, http.MethodGet, web, target)
		if resp.StatusCode != 200 || !bytes.Equal(body, present[rel]) {
			t.Errorf("GET %s (present): %s, %d bytes (the cache's copy: %t), Location %q; want 200 with the web root's %d bytes",
				target, resp.Status, len(body), cached[rel] != nil && bytes.Equal(body, cached[rel]), resp.Header.Get("Location"), len(present[rel]))
		}
	}

	// Only in the cache: 200 with the cached copy's bytes, GET and HEAD.
	for target, rel := range map[string]string{
		"/static/cached.jpg":                                 "cached.jpg",
		"/static/cached.jpg?download=1":                      "cached.jpg",
		"/static/c/with%20space/a%20b+c.jpg?x=%3F&y=1":       "c/with space/a b+c.jpg",
		"/static/with%20space/only%20cached+1.jpg":           "with space/only cached+1.jpg",
		"/static/c/%E5%86%99%E7%9C%9F.jpg":                   "c/写真.jpg",
		"/static/c/sub/percent%252541.jpg":                   "c/sub/percent%2541.jpg",
		"/static/c/sub/question%3Fmark.jpg?q=1":              "c/sub/question?mark.jpg",
		"/static/c/sub/question%3Fmark.jpg?exp=1&sig=a%2Fb=": "c/sub/question?mark.jpg",
	} {
		resp, body := do(t, http.MethodGet, web, target)
		if resp.StatusCode != 200 || !bytes.Equal(body, cached[rel]) {
			t.Errorf("GET %s (cached): %s, %d bytes, Location %q; want 200 with the cached copy's %d bytes",
				target, resp.Status, len(body), resp.Header.Get("Location"), len(cached[rel]))
		}
		resp, body = do(t, http.MethodHead, web, target)
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(cached[rel])) || len(body) != 0 {
			t.Errorf("HEAD %s (cached): %s, Content-Length %d, %d bytes of body; want 200 with Content-Length %d and no body",
				target, resp.Status, resp.ContentLength, len(body), len(cached[rel]))
		}
	}

	// Missing: 302 to the resolver base + the URI and query exactly as
	// sent, percent-encoding included; GET and HEAD alike.
	for _, target := range []string{
		"/static/missing.jpg",
		"/static/a%20b.jpg?download=1&x=%3F",
		"/static/x.jpg?exp=1767225600&sig=ab%2Fcd%3D%3D",
		"/static/2024/%E5%86%99%E7%9C%9F%20cat.jpg?a=1&a=2",
		"/static/a%3Fb.jpg",
		"/static/a%3Fb.jpg?c=%3F%23",
		"/static/plus+sign.jpg?q=a+b",
		"/static/with%20space/missing.jpg?",
		"/static/c/sub/question%3Fmissing.jpg?q=1",
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, _ := do(t, method, web, target)
			if loc := resp.Header.Get("Location"); resp.StatusCode != 302 || loc != base+target {
				t.Errorf("%s %s (missing): %s, Location %q; want 302 to %q", method, target, resp.Status, loc, base+target)
			}
		}
	}

	// The agent's half-written downloads: no spelling of a path out of
	// /static/ reaches them.
	for _, target := range []string{
		"/.offload-fetch/x.jpg",
		"/static/.offload-fetch/x.jpg",
		"/static/../.offload-fetch/x.jpg",
		"/static/%2E%2E/.offload-fetch/x.jpg",
		"/static/..%2F.offload-fetch/x.jpg",
		"/static/%2e%2e%2f.offload-fetch/x.jpg",
		"/static/c/../../.offload-fetch/x.jpg",
	} {
		resp, body := do(t, http.MethodGet, web, target)
		if resp.StatusCode == 200 || bytes.Equal(body, fetching) {
			t.Errorf("GET %s (download in progress): %s, %d bytes; want it never served", target, resp.Status, len(body))
		}
	}

	// A file moved away while it is being requested, as the agent does when
	// it archives: every answer is the file or the redirect, never an error
	// from the moment between the server's look at the file and its open.
	// Then the same for a cached copy the agent evicts and fetches again.
	for _, m := range []struct{ what, root, name string }{
		{"moved", webroot, "moving.jpg"},
		{"evicted from the cache", cache, "evicted.jpg"},
	} {
		path, aside := filepath.Join(m.root, "static", m.name), filepath.Join(dir, m.name)
		data := randomBytes(2<<10, 9)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		target := "/static/" + m.name + "?v=1"
		answers := hammerWhileMoving(path, aside, func() string {
			return fileOrRedirect(web, target, data)
		})
		t.Logf("while the file was %s and put back: %v", m.what, answers)
		for answer, n := range answers {
			if answer == answerFile || answer == answerRedirect {
				continue
			}
			t.Errorf("GET %s while it was %s and put back: %d times %s; want the file or the redirect", target, m.what, n, answer)
		}
	}

	// The claim folder: refused, present file or not, encoded or not, in
	// the web root, the cache or neither; never served and never sent to
	// the resolver.
	for _, target := range []string{
		"/static/.offload-claim/x.jpg",
		"/static/.offload-claim/missing.jpg",
		"/static/.offload-claim/cached.jpg",
		"/static/%2Eoffload-claim/x.jpg",
		"/static/%2Eoffload-claim/cached.jpg",
		"/static/.offload-claim/x.jpg?download=1",
	} {
		resp, _ := do(t, http.MethodGet, web, target)
		if resp.StatusCode != 403 && resp.StatusCode != 404 {
			t.Errorf("GET %s (claim folder): %s, Location %q; want 403 or 404", target, resp.Status, resp.Header.Get("Location"))
		}
	}
}

// The two answers fileOrRedirect accepts.
const (
	answerFile     = "200 with the file"
	answerRedirect = "302 to the resolver"
)

// fileOrRedirect requests target and describes the answer: answerFile for
// data, answerRedirect for the 302 to resolverBase + target, anything else
// in its own words.
func fileOrRedirect(web, target string, data []byte) string {
	resp, body, err := send(http.MethodGet, web, target)
	if err != nil {
		return err.Error()
	}
	switch loc := resp.Header.Get("Location"); {
	case resp.StatusCode == 200 && bytes.Equal(body, data):
		return answerFile
	case resp.StatusCode == 302 && loc == resolverBase+target:
		return answerRedirect
	default:
		return fmt.Sprintf("%s, %d bytes, Location %q", resp.Status, len(body), loc)
	}
}

// movingFor is how long hammerWhileMoving runs: long enough that the
// check-then-serve snippets (nginx's try_files alone, Apache's "-f", the
// lighttpd stat script alone with its stat cache off) were caught every
// time, 10 to 25 times (nginx), about 90 (Apache) and 4 to 7 (lighttpd).
const movingFor = 2 * time.Second

// lighttpdStatCacheOff is a lighttpd site setting that keeps nothing
// between its look at a file and its open. With the default ("simple")
// lighttpd reuses a stat, and the file it has open, until the next second
// and so serves the file even after the move, which hides the moment
// between the Lua stat and the open; "disable" (lighttpd's advice where
// changes must be visible at once) shows it on every run.
const lighttpdStatCacheOff = `server.stat-cache-engine = "disable"`

// hammerWhileMoving renames path to aside and back every millisecond while
// four clients call get, and counts the answers get describes.
func hammerWhileMoving(path, aside string, get func() string) map[string]int {
	var (
		mu      sync.Mutex
		answers = map[string]int{}
		wg      sync.WaitGroup
	)
	deadline := time.Now().Add(movingFor)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(deadline) {
			os.Rename(path, aside)
			time.Sleep(time.Millisecond)
			os.Rename(aside, path)
			time.Sleep(time.Millisecond)
		}
	}()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				a := get()
				mu.Lock()
				answers[a]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return answers
}

// do sends target (path and query) exactly as written, without the
// client's cleaning or re-encoding, and does not follow redirects.
func do(t *testing.T, method, web, target string) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := send(method, web, target)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return resp, body
}

// send is do for any goroutine: it returns the error.
func send(method, web, target string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, web+"/", nil)
	if err != nil {
		return nil, nil, err
	}
	path, query, hasQuery := strings.Cut(target, "?")
	req.URL.Opaque, req.URL.RawQuery, req.URL.ForceQuery = path, query, hasQuery
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

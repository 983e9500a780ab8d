package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestHotCacheEndToEnd runs the whole loop for each web server: the agent
// offloads a photo; browsers are redirected for it; the agent reads those
// redirects in the server's own access log, fetches the photo from S3
// into its cache, and the web server then answers 200 with the original's
// bytes itself, with no redirect; the agent counts the hits.
func TestHotCacheEndToEnd(t *testing.T) {
	for _, server := range []string{"lighttpd", "nginx", "apache2"} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			hotCacheEndToEnd(t, server)
		})
	}
}

func hotCacheEndToEnd(t *testing.T, server string) {
	st := stacktest.Require(t)
	bin := stacktest.Build(t, "./agent/cmd/offload-agent", "./lambda/cmd/offload-resolver")
	dir := t.TempDir()
	webroot, static, archive := filepath.Join(dir, "www"), filepath.Join(dir, "www", "static"), filepath.Join(dir, "archive")
	cache, accessLog := filepath.Join(dir, "cache"), filepath.Join(dir, "access.log")
	for _, d := range []string{static, archive, cache} {
		os.MkdirAll(d, 0o755)
	}
	m := offload.Mapping{URLPrefix: "/static/", KeyPrefix: stacktest.Prefix(t)}
	shim := st.AWSShimEndpoint(t)

	resolverAddr := stacktest.FreeAddr(t)
	stacktest.Start(t, append(st.Env(t, stacktest.Resolver), "AWS_ENDPOINT_URL_S3="+shim), "", bin["offload-resolver"], "--listen", resolverAddr, "--key-prefix", m.KeyPrefix, "--log-format", "text")
	stacktest.WaitListening(t, resolverAddr)
	webAddr := stacktest.FreeAddr(t)
	stacktest.StartWebServer(t, server, webroot, cache, webAddr, "http://"+resolverAddr, stacktest.Site{AccessLog: accessLog})
	web := "http://" + webAddr

	metrics := stacktest.FreeAddr(t)
	stacktest.Start(t, append(st.Env(t, stacktest.Agent), "AWS_ENDPOINT_URL_S3="+shim), "", bin["offload-agent"], "run", "--watch", static, "--archive", archive,
		"--key-prefix", m.KeyPrefix, "--quiet", "1s", "--rescan", "5s", "--host", "e2e",
		"--cache-dir", cache, "--access-log", accessLog, "--cache-threshold", "2", "--metrics-addr", metrics)
	stacktest.WaitListening(t, metrics)

	rel := "2026/hot photo ü.jpg"
	data := randomBytes(300<<10, 42)
	os.MkdirAll(filepath.Join(static, "2026"), 0o755)
	publish(t, filepath.Join(static, filepath.FromSlash(rel)), data, true)
	key, _ := m.KeyForFile(rel)
	u, _ := m.URLForKey(key)
	noFollow := stacktest.HTTPClient(t)
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	follow := stacktest.HTTPClient(t)

	waitFor(t, "the photo archived", time.Minute, func() bool {
		_, err := os.Stat(filepath.Join(archive, filepath.FromSlash(rel)))
		return err == nil
	})
	// Two browsers are redirected (lighttpd's stat cache may serve the
	// moved file for a moment first), and get the photo from S3.
	redirects := 0
	waitFor(t, "two redirects", 20*time.Second, func() bool {
		resp, _ := get(t, noFollow, web+u)
		if resp.StatusCode == 302 {
			redirects++
			// On to the resolver and S3, as the browser goes; not through
			// the web server again, which would be one more miss.
			if resp, body := get(t, follow, resp.Header.Get("Location")); resp.StatusCode != 200 || !bytes.Equal(body, data) {
				t.Fatalf("through the redirects: %s, %d bytes; want 200 with the original", resp.Status, len(body))
			}
		}
		return redirects >= 2
	})
	// The agent sees them in the access log and fetches the photo; from
	// then on the web server answers by itself.
	waitFor(t, "the web server to serve the photo from the cache", 30*time.Second, func() bool {
		resp, body := get(t, noFollow, web+u)
		if resp.StatusCode == 200 && !bytes.Equal(body, data) {
			t.Fatalf("200 from the cache with %d bytes that are not the original", len(body))
		}
		return resp.StatusCode == 200
	})
	if got, err := os.ReadFile(filepath.Join(cache, "static", filepath.FromSlash(rel))); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the cached file: %d bytes, %v; want the original", len(got), err)
	}
	for range 3 {
		if resp, body := get(t, noFollow, web+u+"?size=full"); resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Errorf("from the cache: %s, %d bytes; want 200 with the original", resp.Status, len(body))
		}
	}
	// The hits reach the agent through the log (lighttpd writes it through
	// a pipe, the others at once).
	var status struct {
		Cache struct {
			Files   int   `json:"files"`
			Hits    int64 `json:"hits"`
			Misses  int64 `json:"misses"`
			Fetches int64 `json:"fetches"`
		} `json:"cache"`
	}
	waitFor(t, "the agent to count the hits", 20*time.Second, func() bool {
		resp, err := http.Get("http://" + metrics + "/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&status)
		return status.Cache.Hits >= 3
	})
	if c := status.Cache; c.Files != 1 || c.Fetches != 1 || c.Misses < 2 {
		t.Errorf("agent status: %+v; want 1 file fetched once, at least 2 misses", c)
	}
}

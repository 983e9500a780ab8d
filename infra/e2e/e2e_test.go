// Package e2e is the end-to-end proof: each web server with the project's
// fallback (lighttpd with the Lua script, nginx, Apache with mod_rewrite),
// the resolver's local HTTP face and the agent, on the real local stack,
// all on loopback, seen from a browser's side.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

func TestEndToEnd(t *testing.T) {
	for _, server := range []string{"lighttpd", "nginx", "apache2"} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			endToEnd(t, server)
		})
	}
}

func endToEnd(t *testing.T, server string) {
	st := stacktest.Require(t)
	bin := stacktest.Build(t, "./agent/cmd/offload-agent", "./lambda/cmd/offload-resolver")

	dir := t.TempDir()
	webroot, static, archive := filepath.Join(dir, "www"), filepath.Join(dir, "www", "static"), filepath.Join(dir, "archive")
	for _, d := range []string{static, archive} {
		os.MkdirAll(d, 0o755)
	}
	m := offload.Mapping{URLPrefix: "/static/", KeyPrefix: stacktest.Prefix(t)}

	resolverAddr := stacktest.FreeAddr(t)
	// The resolver and the agent run with only what template.yaml grants
	// each, and see S3 through the AWS shim: as on AWS, not as MinIO answers
	// root.
	shim := st.AWSShimEndpoint(t)
	shimURL, _ := url.Parse(shim)
	stacktest.Start(t, append(st.Env(t, stacktest.Resolver), "AWS_ENDPOINT_URL_S3="+shim), "", bin["offload-resolver"], "--listen", resolverAddr, "--key-prefix", m.KeyPrefix, "--log-format", "text")
	stacktest.WaitListening(t, resolverAddr)

	webAddr := stacktest.FreeAddr(t)
	// An empty hot cache: every file that leaves the web root is redirected.
	stacktest.StartWebServer(t, server, webroot, t.TempDir(), webAddr, "http://"+resolverAddr)
	web := "http://" + webAddr

	// Each of three files (small, multipart-sized, a name with spaces and
	// non-ASCII) is published both ways a back-end does it: written in
	// place under its name, and written to a temporary name then renamed.
	type file struct {
		rel     string
		data    []byte
		renamed bool
	}
	var files []file
	for i, o := range []struct {
		name string
		size int
	}{
		{"small.jpg", 2 << 10},
		{"big.jpg", 12 << 20}, // multipart with the default 8 MiB parts
		{"with space/ünïcödé 写真.jpg", 50 << 10},
	} {
		files = append(files,
			file{"in-place/" + o.name, randomBytes(o.size, byte(2*i+1)), false},
			file{"renamed/" + o.name, randomBytes(o.size, byte(2*i+2)), true})
	}
	// The folders exist before the agent starts, as a site's upload folders
	// do, so it watches each from the start.
	for _, f := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(static, filepath.FromSlash(f.rel))), 0o755)
	}

	stacktest.Start(t, append(st.Env(t, stacktest.Agent), "AWS_ENDPOINT_URL_S3="+shim), "", bin["offload-agent"], "run", "--watch", static, "--archive", archive,
		"--key-prefix", m.KeyPrefix, "--quiet", "1s", "--rescan", "5s", "--host", "e2e")

	p := stacktest.NewPoller(t, 0)
	defer p.Stop()
	// A browser that trusts the stack's CA (S3 is https with --tls).
	noFollow := stacktest.HTTPClient(t)
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var hops []string
	follow := stacktest.HTTPClient(t)
	follow.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		hops = append(hops, r.URL.Host)
		return nil
	}

	for _, f := range files {
		rel, data := f.rel, f.data
		key, _ := m.KeyForFile(rel)
		u, _ := m.URLForKey(key)
		url := web + u

		// 1. Published. Written in place, it waits for the quiet period
		// (1 s) and the web server serves it from disk meanwhile. Renamed
		// into place it may be in S3 within milliseconds
		// (TestPublishedFilesSkipTheQuietPeriod), so from the first moment
		// a browser must get its bytes, from disk or through the redirects.
		publish(t, filepath.Join(static, filepath.FromSlash(rel)), data, f.renamed)
		p.Add(url, data)
		client, when := noFollow, "while local"
		if f.renamed {
			client, when = follow, "just renamed into place"
		}
		resp, body := get(t, client, url)
		if resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Errorf("%s %s: %s, %d bytes; want 200 with the %d bytes", rel, when, resp.Status, len(body), len(data))
		}

		// 2. Once archived: lighttpd -> resolver -> presigned MinIO URL.
		waitFor(t, rel+" archived", time.Minute, func() bool {
			_, err := os.Stat(filepath.Join(archive, filepath.FromSlash(rel)))
			return err == nil
		})
		// lighttpd's stat cache may serve the moved file for a moment (the
		// right bytes, from the open file); then it redirects.
		waitFor(t, rel+" redirected by the web server", 10*time.Second, func() bool {
			resp, _ = get(t, noFollow, url)
			return resp.StatusCode != 200
		})
		if loc := resp.Header.Get("Location"); resp.StatusCode != 302 || loc != "http://"+resolverAddr+u {
			t.Errorf("%s after archiving: the web server answered %s, Location %q; want 302 to the resolver", rel, resp.Status, loc)
		}
		hops = nil
		resp, body = get(t, follow, url)
		if resp.StatusCode != 200 || sha256.Sum256(body) != sha256.Sum256(data) {
			t.Errorf("%s through the redirects: %s, %d bytes; want 200 and the original bytes", rel, resp.Status, len(body))
		}
		s3Host := shimURL.Host
		if len(hops) != 2 || hops[0] != resolverAddr || hops[1] != s3Host {
			t.Errorf("%s redirect chain %v; want [resolver %s, S3 %s]", rel, hops, resolverAddr, s3Host)
		}

		// A HEAD through the same chain (a browser or CDN checking the size
		// first) must reach the object too: the resolver presigns for HEAD.
		hops = nil
		resp, err := follow.Head(url)
		if err != nil {
			t.Fatalf("HEAD %s: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
			t.Errorf("%s HEAD through the redirects %v: %s, Content-Length %d; want 200 and %d", rel, hops, resp.Status, resp.ContentLength, len(data))
		}
	}

	// 3. A file that never existed ends in 404, not a broken redirect.
	resp, _ := get(t, follow, web+"/static/never-uploaded.jpg")
	if resp.StatusCode != 404 {
		t.Errorf("never-uploaded file: %s; want 404", resp.Status)
	}

	// Hostile URLs: whatever the web server does with them, a redirect
	// stays on the resolver, under the prefix, and nothing outside the web
	// root is served.
	for _, path := range []string{"/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd",
		"/static/a%2f..%2f..%2fetc%2fpasswd", "/static//evil.example/x.jpg", "/static/%0d%0aLocation:%20http://evil.example/",
		"/static/x.jpg?redirect=http://evil.example/", "/static/%00.jpg", "/static/\\evil.example/x.jpg"} {
		req, err := http.NewRequest(http.MethodGet, web+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = path // sent exactly as written, no cleaning by the client
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		t.Logf("hostile GET %s: %s %s", path, resp.Status, loc)
		switch {
		case resp.StatusCode == 302 && !strings.HasPrefix(loc, "http://"+resolverAddr+"/static/"):
			t.Errorf("GET %s: 302 to %q; want the resolver under /static/ or a refusal", path, loc)
		case resp.StatusCode == 200 && bytes.Contains(body, []byte("root:")):
			t.Errorf("GET %s: served a file from outside the web root", path)
		}
	}

	// The agent's claim folder is never served.
	probe := filepath.Join(static, ".offload-claim", "probe.jpg")
	os.MkdirAll(filepath.Dir(probe), 0o755)
	os.WriteFile(probe, []byte("claimed"), 0o644)
	if resp, _ := get(t, noFollow, web+"/static/.offload-claim/probe.jpg"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("claim folder: %s; want 403", resp.Status)
	}
	os.Remove(probe)

	// Only the published names reached S3: no temporary name, no claim.
	want := map[string]bool{}
	for _, f := range files {
		key, _ := m.KeyForFile(f.rel)
		want[key] = true
	}
	pages := s3.NewListObjectsV2Paginator(st.S3(t), &s3.ListObjectsV2Input{Bucket: aws.String(st.Bucket), Prefix: aws.String(m.KeyPrefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list %s: %v", m.KeyPrefix, err)
		}
		for _, o := range page.Contents {
			if !want[aws.ToString(o.Key)] {
				t.Errorf("S3 holds %s, which the back-end never published", aws.ToString(o.Key))
			}
			delete(want, aws.ToString(o.Key))
		}
	}
	for key := range want {
		t.Errorf("S3 does not hold %s", key)
	}

	// 4. The poller, which asked for every URL the whole time.
	checks, failures := p.Stop()
	t.Logf("poller: %d requests, %d failures", checks, len(failures))
	if checks < int64(len(files)) {
		t.Errorf("poller made only %d requests", checks)
	}
	for _, f := range failures {
		t.Errorf("poller: %s", f)
	}
}

// publish writes data to path as a back-end does: in place under its
// name, or (renamed) to a hidden temporary name in the same folder, which
// the agent never uploads, then renamed into place once whole.
func publish(t *testing.T, path string, data []byte, renamed bool) {
	t.Helper()
	if !renamed {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".upload-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644) // CreateTemp makes it 0600; the web server must read it
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		t.Fatalf("publish %s by rename: %v", path, err)
	}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed, 'e', '2', 'e'}).Read(b)
	return b
}

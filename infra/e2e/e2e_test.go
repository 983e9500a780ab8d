// Package e2e is the end-to-end proof: lighttpd with the Lua fallback, the
// resolver's local HTTP face and the agent, on the real local stack, all on
// loopback, seen from a browser's side.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

func TestEndToEnd(t *testing.T) {
	for _, server := range []string{"lighttpd", "nginx"} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			endToEnd(t, server)
		})
	}
}

func endToEnd(t *testing.T, server string) {
	st := stacktest.Require(t)
	if _, err := exec.LookPath(server); err != nil {
		t.Fatalf("%s is part of the stack (infra/local/stack install puts it there): %v", server, err)
	}
	repo, _ := filepath.Abs(filepath.Join("..", ".."))
	bin := t.TempDir()
	for _, cmd := range []string{"offload-agent", "offload-resolver"} {
		pkg := "./agent/cmd/offload-agent"
		if cmd == "offload-resolver" {
			pkg = "./lambda/cmd/offload-resolver"
		}
		build := exec.Command("go", "build", "-o", filepath.Join(bin, cmd), pkg)
		build.Dir = repo
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", cmd, err, out)
		}
	}

	dir := t.TempDir()
	webroot, static, archive := filepath.Join(dir, "www"), filepath.Join(dir, "www", "static"), filepath.Join(dir, "archive")
	for _, d := range []string{static, archive} {
		os.MkdirAll(d, 0o755)
	}
	m := offload.Mapping{URLPrefix: "/static/", KeyPrefix: stacktest.Prefix(t)}

	resolverAddr := stacktest.FreeAddr(t)
	start(t, nil, filepath.Join(bin, "offload-resolver"), "--listen", resolverAddr, "--key-prefix", m.KeyPrefix, "--log-format", "text")
	waitListening(t, resolverAddr)

	webAddr := stacktest.FreeAddr(t)
	startWebServer(t, server, repo, dir, webroot, webAddr, "http://"+resolverAddr)
	waitListening(t, webAddr)
	web := "http://" + webAddr

	start(t, nil, filepath.Join(bin, "offload-agent"), "run", "--watch", static, "--archive", archive,
		"--key-prefix", m.KeyPrefix, "--quiet", "1s", "--rescan", "5s", "--host", "e2e")

	files := map[string][]byte{
		"small.jpg":                 randomBytes(2<<10, 1),
		"big.jpg":                   randomBytes(12<<20, 2), // multipart with the default 8 MiB parts
		"with space/ünïcödé 写真.jpg": randomBytes(50<<10, 3),
	}

	p := newPoller()
	defer p.stop()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	for rel, data := range files {
		key, _ := m.KeyForFile(rel)
		u, _ := m.URLForKey(key)
		url := web + u

		// 1. Written the way a back-end writes: temp name, then rename.
		dst := filepath.Join(static, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst+".tmp", data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dst+".tmp", dst); err != nil {
			t.Fatal(err)
		}
		p.add(url, data)
		resp, body := get(t, noFollow, url)
		if resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Errorf("%s while local: %s, %d bytes; want 200 with the %d bytes", rel, resp.Status, len(body), len(data))
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
		var hops []string
		follow := &http.Client{CheckRedirect: func(r *http.Request, via []*http.Request) error {
			hops = append(hops, r.URL.Host)
			return nil
		}}
		resp, body = get(t, follow, url)
		if resp.StatusCode != 200 || sha256.Sum256(body) != sha256.Sum256(data) {
			t.Errorf("%s through the redirects: %s, %d bytes; want 200 and the original bytes", rel, resp.Status, len(body))
		}
		s3Host := st.S3Endpoint[len("http://"):]
		if len(hops) != 2 || hops[0] != resolverAddr || hops[1] != s3Host {
			t.Errorf("%s redirect chain %v; want [resolver %s, S3 %s]", rel, hops, resolverAddr, s3Host)
		}
	}

	// 3. A file that never existed ends in 404, not a broken redirect.
	resp, _ := get(t, http.DefaultClient, web+"/static/never-uploaded.jpg")
	if resp.StatusCode != 404 {
		t.Errorf("never-uploaded file: %s; want 404", resp.Status)
	}

	// The agent's claim folder is never served.
	probe := filepath.Join(static, ".offload-claim", "probe.jpg")
	os.MkdirAll(filepath.Dir(probe), 0o755)
	os.WriteFile(probe, []byte("claimed"), 0o644)
	if resp, _ := get(t, noFollow, web+"/static/.offload-claim/probe.jpg"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("claim folder: %s; want 403", resp.Status)
	}
	os.Remove(probe)

	// 4. The poller, which asked for every URL the whole time.
	checks, failures := p.stop()
	t.Logf("poller: %d requests, %d failures", checks, len(failures))
	if checks < int64(len(files)) {
		t.Errorf("poller made only %d requests", checks)
	}
	for _, f := range failures {
		t.Errorf("poller: %s", f)
	}
}

// startWebServer starts lighttpd or nginx on addr, serving webroot with the
// project's fallback configuration, after checking that configuration.
func startWebServer(t *testing.T, server, repo, dir, webroot, addr, resolverBase string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, server+".conf")
	var env, check, run []string
	switch server {
	case "lighttpd":
		os.WriteFile(conf, fmt.Appendf(nil, `server.document-root = %q
server.bind = "127.0.0.1"
server.port = %s
server.errorlog = %q
var.offload_lua = %q
include %q
`, webroot, port, filepath.Join(dir, "lighttpd-error.log"),
			filepath.Join(repo, "infra/lighttpd/offload-fallback.lua"), filepath.Join(repo, "infra/lighttpd/offload.conf")), 0o644)
		env = []string{"OFFLOAD_RESOLVER_BASE=" + resolverBase}
		check, run = []string{"-tt", "-f", conf}, []string{"-D", "-f", conf}
	case "nginx":
		// Workers run as root here so they can read the test's 0700 temp folders.
		os.WriteFile(conf, fmt.Appendf(nil, `user root;
daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log;
events {}
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 127.0.0.1:%[2]s;
        root %[3]q;
        set $offload_resolver_base %[4]q;
        include %[5]q;
    }
}
`, dir, port, webroot, resolverBase, filepath.Join(repo, "infra/nginx/offload.conf")), 0o644)
		check, run = []string{"-t", "-c", conf}, []string{"-c", conf}
	}
	if out, err := runWithEnv(env, server, check...); err != nil {
		t.Fatalf("%s %v: %v\n%s", server, check, err, out)
	}
	start(t, env, server, run...)
}

// poller requests every published URL in a loop, following redirects, and
// records every answer that is not the original bytes.
type poller struct {
	mu       sync.Mutex
	urls     map[string][32]byte
	failures []string
	checks   atomic.Int64
	cancel   context.CancelFunc
	done     chan struct{}
	once     sync.Once
}

func newPoller() *poller {
	ctx, cancel := context.WithCancel(context.Background())
	p := &poller{urls: map[string][32]byte{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		client := &http.Client{Timeout: 30 * time.Second}
		for ctx.Err() == nil {
			p.mu.Lock()
			urls := make(map[string][32]byte, len(p.urls))
			for u, s := range p.urls {
				urls[u] = s
			}
			p.mu.Unlock()
			for u, want := range urls {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				resp, err := client.Do(req)
				if ctx.Err() != nil {
					return
				}
				p.checks.Add(1)
				if err != nil {
					p.fail(fmt.Sprintf("GET %s: %v", u, err))
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if ctx.Err() != nil {
					return // stopped in the middle of a body: not an answer
				}
				if err != nil {
					p.fail(fmt.Sprintf("GET %s: %s, body cut after %d bytes: %v", u, resp.Status, len(body), err))
					continue
				}
				if resp.StatusCode != 200 || sha256.Sum256(body) != want {
					p.fail(fmt.Sprintf("GET %s: %s with %d bytes that are not the original", u, resp.Status, len(body)))
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return p
}

func (p *poller) add(url string, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.urls[url] = sha256.Sum256(data)
}

func (p *poller) fail(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = append(p.failures, s)
}

func (p *poller) stop() (int64, []string) {
	p.once.Do(func() { p.cancel(); <-p.done })
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checks.Load(), p.failures
}

// start runs a command until the test ends, then stops it (SIGTERM, then
// SIGKILL) by its PID.
func start(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	log, _ := os.Create(filepath.Join(t.TempDir(), filepath.Base(name)+".log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s log:\n%s", filepath.Base(name), tail(b, 4000))
		}
		log.Close()
	})
}

func runWithEnv(env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	return cmd.CombinedOutput()
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

func waitListening(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, addr+" to listen", 20*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed, 'e', '2', 'e'}).Read(b)
	return b
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

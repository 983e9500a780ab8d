package e2e

import (
	"bytes"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

// writeAccessLogs regenerates the agent's access-log parser fixtures from
// the servers' real logs:
//
//	infra/local/stack run -- env OFFLOAD_REQUIRE_STACK=1 go test -count=1 \
//	    -run TestWebServerAccessLog ./infra/e2e -write-access-logs
var writeAccessLogs = flag.Bool("write-access-logs", false,
	"copy each server's access log to agent/hotcache/testdata/access-SERVER.log")

// logLineWithin is how long after its response a request's line may take to
// appear in the access log. The agent tails the log to learn which files
// are popular; lighttpd's own buffering (up to 4 s) is what this rules out.
const logLineWithin = time.Second

// accessLogLine matches the start of a Common/Combined log line, lighttpd's
// default included (its second field is the Host, not the ident): the
// request line, escaped, and the status.
var accessLogLine = regexp.MustCompile(`^\S+ \S+ \S+ \[[^\]]+\] "((?:[^"\\]|\\.)*)" (\d{3}) `)

// TestWebServerAccessLog checks that each server, asked for an access log
// in its usual format, writes one line per request as soon as it has
// answered, with the request line exactly as sent (percent-encoding kept)
// and the status it answered: 200 from the web root or the hot cache, 302
// to the resolver, 403 for the claim folder.
func TestWebServerAccessLog(t *testing.T) {
	stacktest.Require(t) // the web servers come with the stack
	for _, server := range []string{"lighttpd", "nginx", "apache2"} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			accessLog(t, server)
		})
	}
}

func accessLog(t *testing.T, server string) {
	dir := t.TempDir()
	webroot, cache, logPath := filepath.Join(dir, "www"), filepath.Join(dir, "cache"), filepath.Join(dir, "access.log")
	writeFiles(t, webroot, map[string][]byte{
		"present.jpg":          randomBytes(1<<10, 20),
		".offload-claim/x.jpg": []byte("claimed"),
	})
	writeFiles(t, cache, map[string][]byte{
		"cached.jpg":            randomBytes(2<<10, 21),
		"with space/a b+c.jpg":  randomBytes(1<<10, 22),
		"写真.jpg":                randomBytes(1<<10, 23),
		"sub/percent%2541.jpg":  randomBytes(1<<10, 24),
		"sub/question?mark.jpg": randomBytes(1<<10, 25),
	})
	addr := stacktest.FreeAddr(t)
	stacktest.StartWebServer(t, server, webroot, cache, addr, resolverBase, stacktest.Site{AccessLog: logPath})
	web := "http://" + addr

	requests := []struct {
		method, target string
		status         int
	}{
		{http.MethodGet, "/static/present.jpg", 200},
		{http.MethodGet, "/static/cached.jpg?download=1", 200},
		{http.MethodHead, "/static/cached.jpg", 200},
		{http.MethodGet, "/static/with%20space/a%20b+c.jpg?x=%3F&y=1", 200},
		{http.MethodGet, "/static/%E5%86%99%E7%9C%9F.jpg", 200},
		{http.MethodGet, "/static/sub/percent%252541.jpg", 200},
		{http.MethodGet, "/static/sub/question%3Fmark.jpg?q=1", 200},
		{http.MethodGet, "/static/missing.jpg?exp=1767225600&sig=ab%2Fcd%3D%3D", 302},
		{http.MethodHead, "/static/2024/%E5%86%99%E7%9C%9F%20cat.jpg", 302},
		{http.MethodGet, "/static/a%3Fb.jpg?c=%3F%23", 302},
		{http.MethodGet, "/static/.offload-claim/x.jpg", 403},
	}
	for i, r := range requests {
		resp, _ := do(t, r.method, web, r.target)
		if resp.StatusCode != r.status {
			t.Errorf("%s %s: %s; want %d", r.method, r.target, resp.Status, r.status)
		}
		lines, err := waitLines(logPath, i+1, logLineWithin)
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) != i+1 {
			t.Fatalf("%s %s: %d lines in the access log %s after the answer; want %d, one per request:\n%s",
				r.method, r.target, len(lines), logLineWithin, i+1, bytes.Join(lines, []byte("\n")))
		}
		line := lines[i]
		m := accessLogLine.FindSubmatch(line)
		if m == nil {
			t.Errorf("%s %s: log line %q is not in the Common/Combined format", r.method, r.target, line)
			continue
		}
		wantLine := r.method + " " + r.target + " HTTP/1.1"
		if got, status := string(m[1]), string(m[2]); got != wantLine || status != strconv.Itoa(r.status) {
			t.Errorf("%s %s: log line %q has request %q, status %s; want %q, %d", r.method, r.target, line, got, status, wantLine, r.status)
		}
	}

	if *writeAccessLogs {
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(stacktest.RepoRoot(t), "agent", "hotcache", "testdata", "access-"+server+".log")
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", out)
	}
}

// waitLines reads the complete lines of the file at path until there are
// at least n or within has passed, and returns them.
func waitLines(path string, n int, within time.Duration) ([][]byte, error) {
	deadline := time.Now().Add(within)
	for {
		b, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		lines := bytes.SplitAfter(b, []byte("\n"))
		complete := lines[:0]
		for _, l := range lines {
			if bytes.HasSuffix(l, []byte("\n")) {
				complete = append(complete, bytes.TrimSuffix(l, []byte("\n")))
			}
		}
		if len(complete) >= n || time.Now().After(deadline) {
			return complete, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

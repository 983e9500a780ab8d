package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestWebServerSignedLinkFragment checks that a valid link for a file
// whose name holds a "#" (signed as "%23") cannot be sent with a raw "#"
// instead to get another file: the server cuts the target at "#" and
// serves what comes before it ("/static/a.jpg#b?exp=…&sig=…" is
// "/static/a.jpg"), so the check must judge that path, not "a.jpg#b".
// No browser sends a raw "#", so such a target gets no file at all.
func TestWebServerSignedLinkFragment(t *testing.T) {
	stacktest.Require(t) // the web servers come with the stack
	for _, server := range []string{"lighttpd", "nginx", "apache2"} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			webroot := filepath.Join(dir, "www")
			secret := randomBytes(1<<10, 50)
			writeFiles(t, webroot, map[string][]byte{
				"a.jpg":    secret,
				"a.jpg#b":  randomBytes(1<<10, 51),
				"p":        secret,
				"p#/q.jpg": randomBytes(1<<10, 52),
			})
			addr := stacktest.FreeAddr(t)
			stacktest.StartWebServer(t, server, webroot, t.TempDir(), addr, resolverBase, stacktest.Site{SigningKey: e2eSigningKey})
			for _, rel := range []string{"a.jpg#b", "p#/q.jpg"} {
				link := signFor(t, rel)
				// The link as signed works: the test's files are right.
				resp, body := do(t, http.MethodGet, "http://"+addr, link)
				if resp.StatusCode != 200 || bytes.Equal(body, secret) {
					t.Fatalf("GET %s: %s; want 200 with %q's bytes", link, describeAnswer(resp, body, secret), rel)
				}
				raw := strings.Replace(link, "%23", "#", 1)
				for _, method := range []string{"GET", "HEAD"} {
					status, body, err := rawRequest(addr, method, raw)
					if err != nil {
						t.Fatalf("%s %s: %v", method, raw, err)
					}
					if status == 200 || bytes.Contains(body, secret[:64]) {
						t.Errorf("%s %s (a valid link for %q with its %%23 sent as a raw #): %d, %d bytes, the other file's: %t; want no file",
							method, raw, rel, status, len(body), bytes.Contains(body, secret[:64]))
					}
				}
			}
		})
	}
}

// signFor returns a valid link for rel under DefaultMapping, an hour long,
// with e2eSigningKey.
func signFor(t *testing.T, rel string) string {
	t.Helper()
	m := offload.DefaultMapping
	k, err := m.KeyForFile(rel)
	if err != nil {
		t.Fatal(err)
	}
	u, err := m.URLForKey(k)
	if err != nil {
		t.Fatal(err)
	}
	link, err := offload.SignLink([]byte(e2eSigningKey), m, u, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return link
}

// rawRequest sends a request for target to addr with the target byte for
// byte as given (no client cleans it) and returns the answer's status and
// body.
func rawRequest(addr, method, target string) (int, []byte, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, method+" "+target+" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
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

// TestWebServerSignedLinksKeyLengths checks each server's HMAC-SHA256
// against Go's for keys longer than SHA-256's 64-byte block, which HMAC
// hashes first (65, 119, 120 and 1000 bytes: SHA-256's padding around
// 55/56 and 63/64/65 bytes of a block, one and several blocks), a key of
// exactly one block, and a non-ASCII key; and, with each, names whose
// signed message puts the end of SHA-256's input at every offset of a
// 64-byte block (ASCII names of 1 to 130 bytes) and non-ASCII names. The
// Apache check is a SHA-256 written in Lua, so this is its test against
// crypto/sha256; a valid link must get its file on every server.
func TestWebServerSignedLinksKeyLengths(t *testing.T) {
	stacktest.Require(t) // the web servers come with the stack
	keys := map[string]string{}
	for _, n := range []int{64, 65, 119, 120, 1000} {
		k := strings.Repeat("0123456789abcdef", n/16+1)[:n]
		keys[fmt.Sprintf("%d ASCII bytes", n)] = k
	}
	keys["non-ASCII, 70 bytes"] = strings.Repeat("clé-ключ", 7)[:70]
	// Not here, as docs/web-servers/nginx.md asks for an ASCII key: nginx refuses every
	// link with a non-ASCII key of 16 bytes or more but fewer than 16
	// characters ("ключ-写真-clé!", 21 bytes: njs's key.length counts
	// characters), and with a key that is not UTF-8 (njs's process.env is
	// text), both 403 for all, no byte served.
	files := map[string][]byte{}
	var rels []string
	for n := 1; n <= 130; n++ {
		rel := strings.Repeat("x", n)
		rels = append(rels, rel)
		files[rel] = randomBytes(64+n, byte(n))
	}
	for n := 1; n <= 40; n += 3 {
		rel := "写" + strings.Repeat("é", n)
		rels = append(rels, rel)
		files[rel] = randomBytes(200+n, byte(n+1))
	}
	for what, key := range keys {
		for _, server := range []string{"lighttpd", "nginx", "apache2"} {
			t.Run(server+", key of "+what, func(t *testing.T) {
				t.Parallel()
				webroot := filepath.Join(t.TempDir(), "www")
				writeFiles(t, webroot, files)
				addr := stacktest.FreeAddr(t)
				stacktest.StartWebServer(t, server, webroot, t.TempDir(), addr, resolverBase, stacktest.Site{SigningKey: key})
				m := offload.DefaultMapping
				bad := 0
				for _, rel := range rels {
					k, _ := m.KeyForFile(rel)
					u, _ := m.URLForKey(k)
					link, err := offload.SignLink([]byte(key), m, u, time.Now().Add(time.Hour))
					if err != nil {
						t.Fatal(err)
					}
					resp, body := do(t, http.MethodGet, "http://"+addr, link)
					if resp.StatusCode != 200 || !bytes.Equal(body, files[rel]) {
						if bad++; bad <= 5 {
							t.Errorf("GET %s (%d-byte name, %d-byte key): %s; want 200 with its %d bytes",
								link, len(rel), len(key), describeAnswer(resp, body, files[rel]), len(files[rel]))
						}
					}
				}
				if bad > 0 {
					t.Errorf("%d of %d valid links refused", bad, len(rels))
				}
			})
		}
	}
}

// TestLighttpdSigningKeyAndSpawnedBackEnds shows where lighttpd's
// OFFLOAD_SIGNING_KEY goes besides offload-fallback.lua: a FastCGI back
// end that lighttpd spawns itself ("bin-path") gets lighttpd's whole
// environment, the key with it, unless its "bin-copy-environment" names
// the variables to pass (as Debian's 15-fastcgi-php.conf does). So a
// php-cgi spawned without that list can read the key that signs links to
// every original; offload-signing.conf and docs/web-servers/lighttpd.md say so.
func TestLighttpdSigningKeyAndSpawnedBackEnds(t *testing.T) {
	stacktest.Require(t) // the web servers come with the stack
	bin := stacktest.Build(t, "./infra/e2e/testdata/fcgienv")["fcgienv"]
	dir := t.TempDir()
	addr := stacktest.FreeAddr(t)
	after := fmt.Sprintf(`server.modules += ( "mod_fastcgi" )
fastcgi.server = (
    "/copies-all" => (( "bin-path" => %[1]q, "socket" => %[2]q, "check-local" => "disable", "max-procs" => 1 )),
    "/copies-some" => (( "bin-path" => %[1]q, "socket" => %[3]q, "check-local" => "disable", "max-procs" => 1,
                         "bin-copy-environment" => ( "PATH", "SHELL", "USER" ) )),
)
`, bin, filepath.Join(dir, "all.sock"), filepath.Join(dir, "some.sock"))
	stacktest.StartWebServer(t, "lighttpd", filepath.Join(dir, "www"), t.TempDir(), addr, resolverBase,
		stacktest.Site{SigningKey: e2eSigningKey, After: after})
	names := func(path string) map[string]bool {
		resp, body := do(t, http.MethodGet, "http://"+addr, path)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		m := map[string]bool{}
		for _, n := range strings.Fields(string(body)) {
			m[n] = true
		}
		return m
	}
	if all := names("/copies-all"); !all["OFFLOAD_SIGNING_KEY"] {
		t.Errorf("a back end spawned without bin-copy-environment got no OFFLOAD_SIGNING_KEY (it got %d variables): lighttpd no longer passes its environment on, and offload-signing.conf's and docs/web-servers/lighttpd.md's warning is out of date", len(all))
	}
	if some := names("/copies-some"); some["OFFLOAD_SIGNING_KEY"] || !some["PATH"] {
		t.Errorf("a back end spawned with bin-copy-environment PATH, SHELL, USER: OFFLOAD_SIGNING_KEY %t, PATH %t; want only the variables named", some["OFFLOAD_SIGNING_KEY"], some["PATH"])
	}
}

// TestSignedLinkCheckFailsClosed runs each server's signed-link check with
// a fault injected where it computes the MAC (the script's HMAC throws, as
// an njs or Lua runtime error would), and asks for a file
// in the document root with a forged link, an unsigned request and a valid
// link: none may get a byte. A check that cannot decide must refuse. (njs
// leaves a js_set variable empty when its function throws; mod_lua and
// mod_magnet answer 500 when the script raises an error.)
func TestSignedLinkCheckFailsClosed(t *testing.T) {
	stacktest.Require(t) // the web servers come with the stack
	faults := map[string]struct{ script, line, faulty string }{
		"nginx": {"infra/nginx/offload-signing.js", "var crypto = require('crypto');",
			"var crypto = {createHmac: function () { throw new Error('injected fault'); }};"},
		"lighttpd": {"infra/lighttpd/offload-fallback.lua", "  local mac = lighty.c.hmac(",
			"  error(\"injected fault\")\n  local mac = lighty.c.hmac("},
		"apache2": {"infra/apache/offload-signing.lua", "local function hmac_sha256(key, msg)\n",
			"local function hmac_sha256(key, msg)\n  error(\"injected fault\")\n"},
	}
	for server, f := range faults {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(filepath.Join(stacktest.RepoRoot(t), f.script))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Count(src, []byte(f.line)) != 1 {
				t.Fatalf("%s: %q is not there once; the fault cannot be injected", f.script, f.line)
			}
			dir := t.TempDir()
			openToOthers(t, dir)
			script := filepath.Join(dir, filepath.Base(f.script))
			if err := os.WriteFile(script, bytes.Replace(src, []byte(f.line), []byte(f.faulty), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			webroot := filepath.Join(t.TempDir(), "www")
			data := randomBytes(1<<10, 53)
			writeFiles(t, webroot, map[string][]byte{"a.jpg": data})
			addr := stacktest.FreeAddr(t)
			stacktest.StartWebServer(t, server, webroot, t.TempDir(), addr, resolverBase,
				stacktest.Site{SigningKey: e2eSigningKey, SigningScript: script})
			exp := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
			for _, target := range []string{
				"/static/a.jpg?exp=" + exp + "&sig=" + strings.Repeat("0", 64),
				"/static/a.jpg",
				signFor(t, "a.jpg"),
			} {
				resp, body := do(t, http.MethodGet, "http://"+addr, target)
				if resp.StatusCode == 200 || resp.StatusCode == 302 || bytes.Contains(body, data[:64]) {
					t.Errorf("GET %s with the check failing: %s; want a refusal with none of the file", target, describeAnswer(resp, body, data))
				}
			}
		})
	}
}

// openToOthers lets the web server's workers (www-data when the test runs
// as root) read dir.
func openToOthers(t *testing.T, dir string) {
	t.Helper()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(dir); strings.HasPrefix(d, filepath.Clean(os.TempDir())+string(filepath.Separator)); d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil {
			os.Chmod(d, fi.Mode().Perm()|0o005)
		}
	}
}

// TestLighttpdSignedLinksWithTheSitesOwnSetenv runs lighttpd with signed
// links on and a site configuration that sets an environment variable of
// its own for its host after the project's includes, as sites do for
// their applications. lighttpd keeps only the last matching
// setenv.add-environment, so the site's replaces offload-signing.conf's
// OFFLOAD_SIGNED_LINKS; the check must not depend on it: with the key in
// lighttpd's environment, every /static/ request needs a valid link.
func TestLighttpdSignedLinksWithTheSitesOwnSetenv(t *testing.T) {
	stacktest.Require(t) // the web servers come with the stack
	webroot := filepath.Join(t.TempDir(), "www")
	data := randomBytes(1<<10, 54)
	writeFiles(t, webroot, map[string][]byte{"a.jpg": data})
	addr := stacktest.FreeAddr(t)
	stacktest.StartWebServer(t, "lighttpd", webroot, t.TempDir(), addr, resolverBase, stacktest.Site{SigningKey: e2eSigningKey,
		After: `$HTTP["host"] =~ "." { setenv.add-environment = ( "APP_ENV" => "production" ) }`})
	for _, target := range []string{"/static/a.jpg", "/static/a.jpg?exp=" + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + "&sig=" + strings.Repeat("0", 64)} {
		resp, body := do(t, http.MethodGet, "http://"+addr, target)
		if resp.StatusCode != 403 || bytes.Contains(body, data[:64]) {
			t.Errorf("GET %s: %s; want 403 with none of the file", target, describeAnswer(resp, body, data))
		}
	}
	link := signFor(t, "a.jpg")
	if resp, body := do(t, http.MethodGet, "http://"+addr, link); resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Errorf("GET %s: %s; want 200 with the file", link, describeAnswer(resp, body, data))
	}
}

// TestSignedLinksAfterAnInternalRedirect gives each server a site
// configuration whose own error page is a file under /static/ (an internal
// redirect into it, as error_page, ErrorDocument or server.error-handler
// do) and asks for a missing page outside /static/: the original must not
// come back as the error page's body. nginx made its verdict for the
// request as it came (not under /static/, so allowed) and kept it for the
// redirected one: njs's js_set values are cached for the request.
func TestSignedLinksAfterAnInternalRedirect(t *testing.T) {
	stacktest.Require(t) // the web servers come with the stack
	for server, before := range map[string]string{
		"nginx":    "error_page 404 /static/a.jpg;",
		"apache2":  "ErrorDocument 404 /static/a.jpg",
		"lighttpd": `server.error-handler-404 = "/static/a.jpg"`,
	} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			webroot := filepath.Join(t.TempDir(), "www")
			data := randomBytes(1<<10, 55)
			writeFiles(t, webroot, map[string][]byte{"a.jpg": data})
			addr := stacktest.FreeAddr(t)
			stacktest.StartWebServer(t, server, webroot, t.TempDir(), addr, resolverBase,
				stacktest.Site{SigningKey: e2eSigningKey, Before: before})
			for _, target := range []string{"/missing.html", "/static/missing.jpg", signFor(t, "missing.jpg")} {
				resp, body := do(t, http.MethodGet, "http://"+addr, target)
				if bytes.Contains(body, data[:64]) {
					t.Errorf("GET %s: %s; want none of /static/a.jpg, which has no valid link here", target, describeAnswer(resp, body, data))
				}
			}
		})
	}
}

// TestSignedLinksAfterTheSitesOwnRewrite gives each server a rewrite of
// the site's own from /photos/NAME to /static/NAME, placed as each
// server's documentation allows (for nginx in a location of the site's,
// after offload-signing.conf, and at server level after the includes), and
// asks for /photos/a.jpg without a link: the check ran on the request as
// sent, outside /static/, so the original must not come back. (Signed
// links are made for /static/ paths; a request that only reaches /static/
// through a rewrite has no link to check.) Without signing, nginx's
// configuration must serve the rewritten request as before: the check
// offload.conf holds for it is switched off with offload-signing.conf.
func TestSignedLinksAfterTheSitesOwnRewrite(t *testing.T) {
	stacktest.Require(t) // the web servers come with the stack
	const (
		nginxInALocation = "location /photos/ { rewrite ^/photos/(.*)$ /static/$1 last; }"
		nginxAtServer    = "rewrite ^/photos/(.*)$ /static/$1 last;"
	)
	for name, tc := range map[string]struct {
		server   string
		site     stacktest.Site
		unsigned bool
	}{
		"apache2":                         {server: "apache2", site: stacktest.Site{After: "RewriteRule ^/photos/(.*)$ /static/$1 [PT,L]"}},
		"nginx":                           {server: "nginx", site: stacktest.Site{After: nginxInALocation}},
		"nginx, at server level":          {server: "nginx", site: stacktest.Site{After: nginxAtServer}},
		"nginx unsigned":                  {server: "nginx", site: stacktest.Site{After: nginxInALocation}, unsigned: true},
		"nginx unsigned, at server level": {server: "nginx", site: stacktest.Site{After: nginxAtServer}, unsigned: true},
		"lighttpd":                        {server: "lighttpd", site: stacktest.Site{After: "server.modules += ( \"mod_rewrite\" )\nurl.rewrite-once = ( \"^/photos/(.*)$\" => \"/static/$1\" )"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			webroot := filepath.Join(t.TempDir(), "www")
			data := randomBytes(1<<10, 56)
			writeFiles(t, webroot, map[string][]byte{"a.jpg": data})
			addr := stacktest.FreeAddr(t)
			site := tc.site
			if !tc.unsigned {
				site.SigningKey = e2eSigningKey
			}
			stacktest.StartWebServer(t, tc.server, webroot, t.TempDir(), addr, resolverBase, site)
			for _, target := range []string{"/photos/a.jpg", strings.Replace(signFor(t, "a.jpg"), "/static/", "/photos/", 1)} {
				resp, body := do(t, http.MethodGet, "http://"+addr, target)
				switch {
				case tc.unsigned && (resp.StatusCode != 200 || !bytes.Equal(body, data)):
					t.Errorf("GET %s (rewritten into /static/ by the site), signing off: %s; want 200 with the file, as before", target, describeAnswer(resp, body, data))
				case !tc.unsigned && (resp.StatusCode == 200 || bytes.Contains(body, data[:64])):
					t.Errorf("GET %s (rewritten into /static/ by the site): %s; want a refusal with none of the file", target, describeAnswer(resp, body, data))
				}
			}
			if !tc.unsigned {
				// The check refuses the rewritten request, not every one.
				link := signFor(t, "a.jpg")
				if resp, body := do(t, http.MethodGet, "http://"+addr, link); resp.StatusCode != 200 || !bytes.Equal(body, data) {
					t.Errorf("GET %s: %s; want 200 with the file", link, describeAnswer(resp, body, data))
				}
			}
		})
	}
}

// TestWebServerSignedLinksLongestName asks each server for the longest
// name Go signs under DefaultMapping (its key, "original/" and the name,
// is S3's 1,024 bytes), spelt mostly in two-byte characters, so its path
// is three times as long as the name: Apache's check refuses a name over
// 1,024 bytes before hashing, and a path over three times that before
// decoding; the longest valid link must still get its file. One byte more
// and Go refuses to sign it (so no server refusing longer names changes a
// verdict).
func TestWebServerSignedLinksLongestName(t *testing.T) {
	stacktest.Require(t) // the web servers come with the stack
	m := offload.DefaultMapping
	seg := strings.Repeat("é", 100) // 200 bytes, "%C3%A9" 100 times in the path
	rel := strings.Join([]string{seg, seg, seg, seg, seg}, "/")
	rel += strings.Repeat("x", offload.MaxKeyBytes-len(m.KeyPrefix)-len(rel))
	if _, err := m.KeyForFile(rel + "x"); err == nil {
		t.Fatalf("KeyForFile accepts a %d-byte name; the test's name is not the longest", len(rel)+1)
	}
	data := randomBytes(1<<10, 57)
	link := signFor(t, rel)
	for _, server := range []string{"lighttpd", "nginx", "apache2"} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			webroot := filepath.Join(t.TempDir(), "www")
			writeFiles(t, webroot, map[string][]byte{rel: data})
			addr := stacktest.FreeAddr(t)
			stacktest.StartWebServer(t, server, webroot, t.TempDir(), addr, resolverBase, stacktest.Site{SigningKey: e2eSigningKey})
			if resp, body := do(t, http.MethodGet, "http://"+addr, link); resp.StatusCode != 200 || !bytes.Equal(body, data) {
				t.Errorf("GET the link for a %d-byte name (%d-byte path): %s; want 200 with the file", len(rel), len(link), describeAnswer(resp, body, data))
			}
		})
	}
}

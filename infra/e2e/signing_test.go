package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// e2eSigningKey is the signing key of TestWebServerSignedLinks: ASCII, as
// "openssl rand -hex 32" makes one, and longer than the minimum.
const e2eSigningKey = "5f0c1e2d3b4a69788796a5b4c3d2e1f00f1e2d3c4b5a6978"

// TestWebServerSignedLinks checks each web server with signed links on: no
// byte of an original, in the web root, in the hot cache or offloaded,
// leaves the server without a link the resolver's own check (VerifyLink)
// accepts, and every link it accepts gets the file or the 302 to the
// resolver with the query intact, so that the resolver checks it again.
// The names are hostile on purpose: spaces, "+", "%", "?", "#", ";" and
// non-ASCII must verify in the server exactly as in Go.
func TestWebServerSignedLinks(t *testing.T) {
	stacktest.Require(t) // the web servers come with the stack
	for _, server := range []string{"lighttpd", "nginx", "apache2"} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			signedLinks(t, server)
		})
	}
}

// signedFile is one original the test asks for, and where it is.
type signedFile struct {
	rel  string // relative to the watch folder
	data []byte // nil: offloaded, in neither the web root nor the cache
	in   string // "local", "cached" or "offloaded"
}

func signedLinks(t *testing.T, server string) {
	dir := t.TempDir()
	webroot, cache := filepath.Join(dir, "www"), filepath.Join(dir, "cache")
	files := []signedFile{
		{"local.jpg", randomBytes(2<<10, 31), "local"},
		{"with space/a b+c.jpg", randomBytes(1<<10, 32), "local"},
		{"写真.jpg", randomBytes(1<<10, 33), "local"},
		{"sub/percent%2541.jpg", randomBytes(1<<10, 34), "local"},
		{"sub/question?mark#hash;semi&amp=1.jpg", randomBytes(1<<10, 35), "local"},
		{"c/cached.jpg", randomBytes(2<<10, 36), "cached"},
		{"c/with space/x+y%.jpg", randomBytes(1<<10, 37), "cached"},
		{"c/猫 ?#.jpg", randomBytes(1<<10, 38), "cached"},
		{"gone.jpg", nil, "offloaded"},
		{"gone dir/写真 ?#%25;.jpg", nil, "offloaded"},
	}
	local, cached := map[string][]byte{}, map[string][]byte{}
	for _, f := range files {
		switch f.in {
		case "local":
			local[f.rel] = f.data
		case "cached":
			cached[f.rel] = f.data
		}
	}
	writeFiles(t, webroot, local)
	writeFiles(t, cache, cached)
	writeFiles(t, webroot, map[string][]byte{".offload-claim/x.jpg": []byte("claimed")})

	addr := stacktest.FreeAddr(t)
	stacktest.StartWebServer(t, server, webroot, cache, addr, resolverBase, stacktest.Site{SigningKey: e2eSigningKey})
	web := "http://" + addr
	key, m, now := []byte(e2eSigningKey), offload.DefaultMapping, time.Now()

	// sign returns the link's path and its query.
	sign := func(rel string, exp time.Time) (path, query string) {
		t.Helper()
		objKey, err := m.KeyForFile(rel)
		if err != nil {
			t.Fatal(err)
		}
		u, err := m.URLForKey(objKey)
		if err != nil {
			t.Fatal(err)
		}
		link, err := offload.SignLink(key, m, u, exp)
		if err != nil {
			t.Fatal(err)
		}
		path, query, _ = strings.Cut(link, "?")
		return path, query
	}

	for _, f := range files {
		path, query := sign(f.rel, now.Add(time.Hour))
		q, _ := url.ParseQuery(query)
		exp, sig := q.Get("exp"), q.Get("sig")
		_, expiredQuery := sign(f.rel, now.Add(-time.Hour))
		_, otherQuery := sign("other.jpg", now.Add(time.Hour))
		flipped := sig[:63] + "0"
		if sig[63] == '0' {
			flipped = sig[:63] + "1"
		}
		n, _ := strconv.ParseInt(exp, 10, 64)

		// Each query against the canonical path: the server must agree
		// with VerifyLink, which is what the resolver runs.
		for _, v := range []struct{ what, query string }{
			{"valid", query},
			{"valid, sig in upper case", "exp=" + exp + "&sig=" + strings.ToUpper(sig)},
			{"valid, more parameters, other order", "download=1&sig=" + sig + "&x=%3F%23&exp=" + exp},
			{"valid, exp with leading zeros", "exp=000" + exp + "&sig=" + sig},
			{"valid, exp with a plus sign", "exp=%2B" + exp + "&sig=" + sig},
			{"valid, exp percent-encoded", "exp=%3" + exp[:1] + exp[1:] + "&sig=" + sig},
			{"unsigned", ""},
			{"empty query", "?"},
			{"no sig", "exp=" + exp},
			{"no exp", "sig=" + sig},
			{"bad sig", "exp=" + exp + "&sig=" + flipped},
			{"sig truncated", "exp=" + exp + "&sig=" + sig[:62]},
			{"sig of another file", otherQuery},
			{"expired", expiredQuery},
			{"exp moved on", "exp=" + strconv.FormatInt(n+1, 10) + "&sig=" + sig},
			{"exp negative", "exp=-" + exp + "&sig=" + sig},
			{"two exps, the first wrong", "exp=" + strconv.FormatInt(n+1, 10) + "&exp=" + exp + "&sig=" + sig},
			{"two sigs, the first wrong", "exp=" + exp + "&sig=" + flipped + "&sig=" + sig},
			{"semicolon in the exp pair", "exp=" + exp + ";x=1&sig=" + sig},
			{"plus in the sig", "exp=" + exp + "&sig=+" + sig},
			{"valid, keys percent-encoded", "%65%78%70=" + exp + "&s%69g=" + sig},
			{"valid, a bad escape in the first exp", "exp=%zz&exp=" + exp + "&sig=" + sig},
			{"valid, more parameters after both", "exp=" + exp + "&sig=" + sig + "&exp=1&sig=" + flipped + "&%zz"},
			{"keys in upper case", "EXP=" + exp + "&%53IG=" + sig},
			{"the first exp empty", "exp&exp=" + exp + "&sig=" + sig},
		} {
			target := path
			if v.query != "" {
				target += "?" + strings.TrimPrefix(v.query, "?")
			}
			vq, _ := url.ParseQuery(strings.TrimPrefix(v.query, "?"))
			valid := offload.VerifyLink(key, f.rel, vq.Get("exp"), vq.Get("sig"), now) == nil
			if strings.HasPrefix(v.what, "valid") != valid {
				t.Fatalf("%s: VerifyLink says valid=%t; the test's table is wrong", v.what, valid)
			}
			checkSigned(t, web, target, f, valid, true, v.what)
		}

		// Other spellings of the same path with the valid query: an
		// encoding VerifyLink decodes to the same name is the same link;
		// a path the mapping refuses is no link at all.
		for _, v := range []struct {
			what, path string
			valid      bool
		}{
			{"lower-case percent-encoding", lowerEscapes(path), true},
			{"an unreserved letter percent-encoded", encodeFirstLetter(path), true},
			{"a dot segment", strings.Replace(path, "/static/", "/static/./", 1), false},
			{"a dot-dot segment", strings.Replace(path, "/static/", "/static/x/../", 1), false},
			{"a double slash", strings.Replace(path, "/static/", "/static//", 1), false},
			{"a double slash before static", "/" + path, false},
			{"static percent-encoded", strings.Replace(path, "/static/", "/%73tatic/", 1), false},
		} {
			checkSigned(t, web, v.path+"?"+query, f, v.valid, false, v.what)
		}
	}

	// The claim folder stays refused, signed or not.
	path, query := sign(".offload-claim/x.jpg", now.Add(time.Hour))
	for _, target := range []string{path, path + "?" + query} {
		resp, body := do(t, http.MethodGet, web, target)
		if (resp.StatusCode != 403 && resp.StatusCode != 404) || bytes.Contains(body, []byte("claimed")) {
			t.Errorf("GET %s (claim folder): %s, %d bytes, Location %q; want 403 or 404", target, resp.Status, len(body), resp.Header.Get("Location"))
		}
	}
}

// checkSigned requests target with GET and HEAD: a valid link gets the
// file's bytes (local or cached) or the 302 to the resolver with target
// intact (offloaded); anything else gets no byte of the file and no
// redirect: the server refuses before it serves or redirects, with a 403
// when the path is canonical (a path the server itself finds malformed may
// get its own 400 or 404).
func checkSigned(t *testing.T, web, target string, f signedFile, valid, canonical bool, what string) {
	t.Helper()
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, body := do(t, method, web, target)
		loc := resp.Header.Get("Location")
		got := describeAnswer(resp, body, f.data)
		switch {
		case valid && f.data != nil:
			if resp.StatusCode != 200 || (method == http.MethodGet && !bytes.Equal(body, f.data)) ||
				(method == http.MethodHead && resp.ContentLength != int64(len(f.data))) {
				t.Errorf("%s %s (%s, %s): %s; want 200 with its %d bytes", method, target, f.in, what, got, len(f.data))
			}
		case valid:
			if resp.StatusCode != 302 || loc != resolverBase+target {
				t.Errorf("%s %s (%s, %s): %s; want 302 to %q", method, target, f.in, what, got, resolverBase+target)
			}
		default:
			leaked := resp.StatusCode == 200 || resp.StatusCode == 302 || loc != "" ||
				(f.data != nil && bytes.Contains(body, f.data[:64]))
			if leaked || (canonical && resp.StatusCode != 403) {
				t.Errorf("%s %s (%s, %s): %s; want 403 with none of the file", method, target, f.in, what, got)
			}
		}
	}
}

// describeAnswer says what an answer is, for failure messages.
func describeAnswer(resp *http.Response, body, data []byte) string {
	s := resp.Status + ", " + strconv.Itoa(len(body)) + " bytes"
	if data != nil && len(body) > 0 && bytes.Contains(body, data[:64]) {
		s += " (the file's)"
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		s += ", Location " + strconv.Quote(loc)
	}
	return s
}

// lowerEscapes writes every percent-encoding in path in lower case.
func lowerEscapes(path string) string {
	b := []byte(path)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = lowerHex(b[i+1]), lowerHex(b[i+2])
		}
	}
	return string(b)
}

func lowerHex(c byte) byte {
	if c >= 'A' && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

// encodeFirstLetter percent-encodes the first ASCII letter of path's last
// segment, which needs no encoding: "/static/gone.jpg" becomes
// "/static/%67one.jpg".
func encodeFirstLetter(path string) string {
	i := strings.LastIndexByte(path, '/') + 1
	for j := i; j < len(path); j++ {
		if path[j] == '%' {
			j += 2 // an escape's hex digits are not letters of the name
			continue
		}
		if c := path[j]; (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
			return path[:j] + "%" + strings.ToUpper(strconv.FormatInt(int64(c), 16)) + path[j+1:]
		}
	}
	return path
}

// TestWebServerSignedLinksWithoutAGoodKey checks that signed links on with
// a key the resolver would refuse (shorter than MinSigningKeyBytes) refuse
// everything rather than check nothing: even a link correctly signed with
// that key gets no byte of a file in the document root.
func TestWebServerSignedLinksWithoutAGoodKey(t *testing.T) {
	stacktest.Require(t) // the web servers come with the stack
	const shortKey = "fifteen bytes!!"
	if len(shortKey) >= offload.MinSigningKeyBytes {
		t.Fatalf("the key has %d bytes; want fewer than %d", len(shortKey), offload.MinSigningKeyBytes)
	}
	for _, server := range []string{"lighttpd", "nginx", "apache2"} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			webroot := filepath.Join(dir, "www")
			data := randomBytes(1<<10, 40)
			writeFiles(t, webroot, map[string][]byte{"local.jpg": data})
			addr := stacktest.FreeAddr(t)
			stacktest.StartWebServer(t, server, webroot, t.TempDir(), addr, resolverBase, stacktest.Site{SigningKey: shortKey})
			exp := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
			m := hmac.New(sha256.New, []byte(shortKey))
			io.WriteString(m, "offload-link-v1\nlocal.jpg\n"+exp)
			for _, target := range []string{
				"/static/local.jpg",
				"/static/local.jpg?exp=" + exp + "&sig=" + hex.EncodeToString(m.Sum(nil)),
			} {
				resp, body := do(t, http.MethodGet, "http://"+addr, target)
				if resp.StatusCode != 403 || bytes.Contains(body, data[:64]) {
					t.Errorf("GET %s with a %d-byte key: %s; want 403 with none of the file", target, len(shortKey), describeAnswer(resp, body, data))
				}
			}
		})
	}
}

// TestSignedLinksThroughTheResolver follows signed links for offloaded
// originals with hostile names through each web server to the real
// resolver, signing on in both with the same key, and on to S3: what the
// web server lets through, the resolver accepts too (its VerifyLink on the
// query the 302 carried), and the bytes that come back are the original's;
// an expired link gets no byte from either.
func TestSignedLinksThroughTheResolver(t *testing.T) {
	st := stacktest.Require(t)
	bin := stacktest.Build(t, "./lambda/cmd/offload-resolver")
	m := offload.Mapping{URLPrefix: "/static/", KeyPrefix: stacktest.Prefix(t)}
	files := map[string][]byte{
		"gone.jpg":                randomBytes(2<<10, 41),
		"gone dir/写真 ?#%;&=+.jpg": randomBytes(1<<10, 42),
	}
	s3c := st.S3(t)
	for rel, data := range files {
		key, err := m.KeyForFile(rel)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s3c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	// --verify none: the resolver presigns without the ledger, which has
	// nothing to do with links.
	resolverAddr := stacktest.FreeAddr(t)
	stacktest.Start(t, append(st.Env(t, stacktest.Resolver), "AWS_ENDPOINT_URL_S3="+st.AWSShimEndpoint(t), "OFFLOAD_SIGNING_KEY="+e2eSigningKey), "",
		bin["offload-resolver"], "--listen", resolverAddr, "--key-prefix", m.KeyPrefix, "--verify", "none", "--log-format", "text")
	stacktest.WaitListening(t, resolverAddr)
	base := "http://" + resolverAddr

	for _, server := range []string{"lighttpd", "nginx", "apache2"} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			webroot := filepath.Join(dir, "www")
			writeFiles(t, webroot, map[string][]byte{"local.jpg": []byte("local")})
			addr := stacktest.FreeAddr(t)
			stacktest.StartWebServer(t, server, webroot, t.TempDir(), addr, base, stacktest.Site{SigningKey: e2eSigningKey})
			web := "http://" + addr
			noFollow := stacktest.HTTPClient(t)
			noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			browser := stacktest.HTTPClient(t)

			for rel, data := range files {
				key, _ := m.KeyForFile(rel)
				u, _ := m.URLForKey(key)
				for _, exp := range []time.Time{time.Now().Add(time.Hour), time.Now().Add(-time.Hour)} {
					link, err := offload.SignLink([]byte(e2eSigningKey), m, u, exp)
					if err != nil {
						t.Fatal(err)
					}
					valid := exp.After(time.Now())
					resp, _ := do(t, http.MethodGet, web, link)
					switch loc := resp.Header.Get("Location"); {
					case !valid && resp.StatusCode != 403:
						t.Errorf("GET %s (expired) at the web server: %s, Location %q; want 403", link, resp.Status, loc)
					case valid && (resp.StatusCode != 302 || loc != base+link):
						t.Errorf("GET %s at the web server: %s, Location %q; want 302 to %q", link, resp.Status, loc, base+link)
					}
					// The resolver on its own says the same of the link.
					req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
					req.URL.Opaque, req.URL.RawQuery, _ = strings.Cut(link, "?")
					r2, err := noFollow.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					r2.Body.Close()
					if want := map[bool]int{true: 302, false: 403}[valid]; r2.StatusCode != want {
						t.Errorf("GET %s at the resolver (valid %t): %s; want %d", link, valid, r2.Status, want)
					}
					if !valid {
						continue
					}
					// And a browser that follows gets the original.
					r3, err := browser.Get(web + link)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(r3.Body)
					r3.Body.Close()
					if r3.StatusCode != 200 || !bytes.Equal(body, data) {
						t.Errorf("GET %s followed to S3: %s, %d bytes; want 200 with the original's %d", link, r3.Status, len(body), len(data))
					}
				}
			}
		})
	}
}

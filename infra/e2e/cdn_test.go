package e2e

import (
	"bytes"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestEndToEndThroughTheCDN is the whole path with the template's Cdn=on,
// on each web server: the web server redirects a missing original to the
// resolver, whose key comes from Secrets Manager (the stand-in), and the
// resolver to a CloudFront URL signed for the recorded version; the local
// edge checks the signature and serves the bytes, from MinIO once and then
// from its cache. Then erase, with --cdn-distribution, empties the edge:
// first without the CloudFront grant (it names it and leaves the key not
// done), then with it.
func TestEndToEndThroughTheCDN(t *testing.T) {
	for _, server := range []string{"lighttpd", "nginx", "apache2"} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			throughTheCDN(t, server)
		})
	}
}

func throughTheCDN(t *testing.T, server string) {
	st := stacktest.Require(t)
	bin := stacktest.Build(t, "./agent/cmd/offload-agent", "./lambda/cmd/offload-resolver")
	dir := t.TempDir()
	webroot, static, archive := filepath.Join(dir, "www"), filepath.Join(dir, "www", "static"), filepath.Join(dir, "archive")
	for _, d := range []string{filepath.Join(static, "cdn"), archive} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := offload.Mapping{URLPrefix: "/static/", KeyPrefix: stacktest.Prefix(t)}
	shim := st.AWSShimEndpoint(t)

	// The distribution trusts the site's key; only the eraser may call
	// its API, as the template's EraserPolicy grants.
	key := stacktest.NewEdgeKey(t, stacktest.KeyECDSA)
	eraser := st.Credentials(t, stacktest.Eraser)
	edge := stacktest.StartEdge(t, stacktest.EdgeOptions{KeyGroup: map[string][]byte{key.ID: key.PublicKeyPEM},
		APIAccessKeys: []string{eraser.AccessKeyID}})
	edgeURL, _ := url.Parse(edge.URL)
	// The private key lives in Secrets Manager, readable by the resolver.
	const secret = "offload-cdn-key"
	secrets := stacktest.StartSecretsManager(t, map[string]string{secret: string(key.PrivateKeyPEM)},
		st.Credentials(t, stacktest.Resolver).AccessKeyID)

	resolverAddr := stacktest.FreeAddr(t)
	// A 2-minute expiry: a signing window (how long a warm answer outlives
	// the erasure) of 8 s.
	stacktest.Start(t, append(st.Env(t, stacktest.Resolver), "AWS_ENDPOINT_URL_S3="+shim, "AWS_ENDPOINT_URL_SECRETS_MANAGER="+secrets, "OFFLOAD_EXPIRY=2m",
		"OFFLOAD_CDN_URL="+edge.URL, "OFFLOAD_CDN_KEY_PAIR_ID="+key.ID, "OFFLOAD_CDN_PRIVATE_KEY_SECRET="+secret),
		"", bin["offload-resolver"], "--listen", resolverAddr, "--key-prefix", m.KeyPrefix, "--log-format", "text")
	stacktest.WaitListening(t, resolverAddr)
	webAddr := stacktest.FreeAddr(t)
	stacktest.StartWebServer(t, server, webroot, t.TempDir(), webAddr, "http://"+resolverAddr)
	web := "http://" + webAddr
	stacktest.Start(t, append(st.Env(t, stacktest.Agent), "AWS_ENDPOINT_URL_S3="+shim), "", bin["offload-agent"], "run",
		"--watch", static, "--archive", archive, "--key-prefix", m.KeyPrefix, "--quiet", "1s", "--rescan", "5s", "--host", "e2e-cdn")

	noFollow := stacktest.HTTPClient(t)
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var hops []string
	follow := stacktest.HTTPClient(t)
	follow.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		hops = append(hops, r.URL.Host)
		return nil
	}

	rel := "cdn/ünï cödé + 写真.jpg"
	data := randomBytes(300<<10, 28)
	publish(t, filepath.Join(static, filepath.FromSlash(rel)), data, true)
	k, _ := m.KeyForFile(rel)
	u, _ := m.URLForKey(k)
	waitFor(t, rel+" archived", time.Minute, func() bool { return exists(filepath.Join(archive, filepath.FromSlash(rel))) })
	waitFor(t, rel+" redirected by the web server", 10*time.Second, func() bool {
		resp, _ := get(t, noFollow, web+u)
		return resp.StatusCode == http.StatusFound
	})

	// web server -> resolver -> the edge, which fetches from MinIO once.
	hops = nil
	resp, body := get(t, follow, web+u)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("through the CDN: %s, %d bytes; want 200 and the original's %d", resp.Status, len(body), len(data))
	}
	if len(hops) != 2 || hops[0] != resolverAddr || hops[1] != edgeURL.Host {
		t.Errorf("redirect chain %v; want [resolver %s, edge %s]", hops, resolverAddr, edgeURL.Host)
	}
	// The resolver's URL: the edge's, pinned to the recorded version,
	// signed with the site's key. A second view is the edge's cached copy.
	r1, _ := get(t, noFollow, "http://"+resolverAddr+u)
	signed := r1.Header.Get("Location")
	if !strings.HasPrefix(signed, edge.URL+offload.CDNPath(k)+"?versionId=") || !strings.Contains(signed, "Key-Pair-Id="+key.ID) {
		t.Fatalf("the resolver's Location %q; want the edge's URL of %s with versionId and Key-Pair-Id %s", signed, k, key.ID)
	}
	if resp, body := get(t, noFollow, signed); resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) || !stacktest.Hit(resp) {
		t.Errorf("the signed URL again: %s, X-Cache %q, %d bytes; want 200, a hit, the original", resp.Status, stacktest.XCache(resp), len(body))
	}
	// A HEAD through the same chain: 200 and the original's length.
	hops = nil
	head, err := follow.Head(web + u)
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != http.StatusOK || head.ContentLength != int64(len(data)) {
		t.Errorf("HEAD through the CDN %v: %s, Content-Length %d; want 200 and %d", hops, head.Status, head.ContentLength, len(data))
	}

	// Erase it. Without the CloudFront grant (the stack's root key, which
	// the distribution's API does not allow) the versions go, but the edge
	// keeps its copy: erase says which permission is missing and leaves
	// the key not done.
	cloudfrontAPI := "AWS_ENDPOINT_URL_CLOUDFRONT=" + edge.APIEndpoint
	erase := func(env ...string) (string, error) {
		cmd := exec.Command(bin["offload-agent"], "erase", "--key-prefix", m.KeyPrefix, "--by", "e2e", "--why", "a person asked",
			"--cdn-distribution", edge.DistributionID, "--cdn-wait", "1m", u)
		cmd.Env = append(append(os.Environ(), env...), "AWS_ENDPOINT_URL_S3="+shim, cloudfrontAPI)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := erase()
	if err == nil || !strings.Contains(out, "NOT DONE") || !strings.Contains(out, "missing permission cloudfront:CreateInvalidation") {
		t.Fatalf("erase without the CloudFront grant: %v\n%s\nwant exit 1, NOT DONE, naming cloudfront:CreateInvalidation", err, out)
	}
	if resp, _ := get(t, noFollow, signed); resp.StatusCode != http.StatusOK || !stacktest.Hit(resp) {
		t.Fatalf("the signed URL after the S3 versions are gone, before any invalidation: %s, X-Cache %q; want the edge's cached copy (what the invalidation is for)",
			resp.Status, stacktest.XCache(resp))
	}
	// With the EraserPolicy's grant: done, and the edge has forgotten it.
	out, err = erase(st.Env(t, stacktest.Eraser)...)
	if err != nil || !strings.Contains(out, "erased "+k) || !strings.Contains(out, "CDN invalidation ") {
		t.Fatalf("erase with the EraserPolicy: %v\n%s\nwant exit 0, erased, with the invalidation's ID", err, out)
	}
	// The edge asks S3 again, which holds no version of the key: AWS
	// answers the cloudfront principal (no s3:ListBucket) 403; the AWS shim
	// passes MinIO's 404 NoSuchVersion for a version that is gone. Either
	// way, an error and not the bytes.
	if resp, _ := get(t, noFollow, signed); (resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound) || stacktest.Hit(resp) {
		t.Errorf("the signed URL handed out before the erasure, after it: %s, X-Cache %q; want 403 or 404 from the origin (the edge's copy invalidated)",
			resp.Status, stacktest.XCache(resp))
	}
	waitFor(t, "the resolver to answer 410 (within one signing window)", 30*time.Second, func() bool {
		resp, _ := get(t, noFollow, "http://"+resolverAddr+u)
		return resp.StatusCode == http.StatusGone
	})
}

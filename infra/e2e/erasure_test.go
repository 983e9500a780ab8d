package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// erasePoll is how often the test's agents look for erasures: short, so
// "within one poll interval" is seconds here.
const erasePoll = "1s"

// TestErasureReachesEveryHost is issue 27's whole loop on the real stack,
// with two agents as two hosts (their own folders and host names, one
// bucket and ledger): host A offloads an original; host B's web server
// redirects browsers for it and B's agent brings it into B's hot cache;
// an operator erases it. Then no version or delete marker of the key
// remains, the resolver answers 410, a URL presigned before the erasure
// fails, A's archive and B's cache no longer hold it (within a few polls),
// and the audit reports the erasure complete. With B down during the
// erasure, the audit names B until B comes back and forgets it too.
func TestErasureReachesEveryHost(t *testing.T) {
	for _, down := range []bool{false, true} {
		name := "both hosts up"
		if down {
			name = "host B down during the erasure"
		}
		t.Run(name, func(t *testing.T) { erasureReachesEveryHost(t, down) })
	}
}

func erasureReachesEveryHost(t *testing.T, bDown bool) {
	st := stacktest.Require(t)
	bin := stacktest.Build(t, "./agent/cmd/offload-agent", "./lambda/cmd/offload-resolver")
	dir := t.TempDir()
	m := offload.Mapping{URLPrefix: "/static/", KeyPrefix: stacktest.Prefix(t)}
	shim := st.AWSShimEndpoint(t)

	// Host A: a watch folder and an archive, no web server needed.
	aStatic, aArchive := filepath.Join(dir, "a", "www", "static"), filepath.Join(dir, "a", "archive")
	// Host B: its own (empty) folders, a web server, a hot cache.
	bWebroot, bStatic, bArchive := filepath.Join(dir, "b", "www"), filepath.Join(dir, "b", "www", "static"), filepath.Join(dir, "b", "archive")
	bCache, bLog := filepath.Join(dir, "b", "cache"), filepath.Join(dir, "b", "access.log")
	for _, d := range []string{aStatic, aArchive, bStatic, bArchive, bCache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	resolverAddr := stacktest.FreeAddr(t)
	// A 2-minute expiry makes the resolver's signing window (and so how
	// long a warm answer can outlive the erasure) 8 s instead of 1 min.
	stacktest.Start(t, append(st.Env(t, stacktest.Resolver), "AWS_ENDPOINT_URL_S3="+shim, "OFFLOAD_EXPIRY=2m"), "", bin["offload-resolver"],
		"--listen", resolverAddr, "--key-prefix", m.KeyPrefix, "--log-format", "text")
	stacktest.WaitListening(t, resolverAddr)
	webAddr := stacktest.FreeAddr(t)
	stacktest.StartWebServer(t, "lighttpd", bWebroot, bCache, webAddr, "http://"+resolverAddr, stacktest.Site{AccessLog: bLog})
	web := "http://" + webAddr

	agentEnv := append(st.Env(t, stacktest.Agent), "AWS_ENDPOINT_URL_S3="+shim)
	stacktest.Start(t, agentEnv, "", bin["offload-agent"], "run", "--watch", aStatic, "--archive", aArchive,
		"--key-prefix", m.KeyPrefix, "--quiet", "1s", "--rescan", "5s", "--host", "a", "--erase-poll", erasePoll, "--status-socket", "off")
	startB := func() *stacktest.Process {
		metrics := stacktest.FreeAddr(t)
		p := stacktest.Start(t, agentEnv, "", bin["offload-agent"], "run", "--watch", bStatic, "--archive", bArchive,
			"--key-prefix", m.KeyPrefix, "--quiet", "1s", "--rescan", "5s", "--host", "b", "--erase-poll", erasePoll,
			"--cache-dir", bCache, "--access-log", bLog, "--cache-threshold", "2", "--metrics-addr", metrics, "--status-socket", "off")
		stacktest.WaitListening(t, metrics)
		return p
	}
	b := startB()

	// A offloads the original.
	rel := "2026/erase me ü.jpg"
	data := randomBytes(200<<10, 27)
	os.MkdirAll(filepath.Join(aStatic, "2026"), 0o755)
	publish(t, filepath.Join(aStatic, filepath.FromSlash(rel)), data, true)
	key, _ := m.KeyForFile(rel)
	u, _ := m.URLForKey(key)
	archived, cached := filepath.Join(aArchive, filepath.FromSlash(rel)), filepath.Join(bCache, "static", filepath.FromSlash(rel))
	waitFor(t, "host A to archive the original", time.Minute, func() bool { return exists(archived) })

	// Browsers ask host B for it: redirected to the resolver, then S3; B's
	// agent sees the redirects in the access log and caches the original.
	noFollow := stacktest.HTTPClient(t)
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var presigned string // a URL handed out before the erasure
	waitFor(t, "host B to cache the original", time.Minute, func() bool {
		resp, _ := get(t, noFollow, web+u)
		if resp.StatusCode == http.StatusFound {
			r2, _ := get(t, noFollow, resp.Header.Get("Location")) // the resolver
			if r2.StatusCode == http.StatusFound {
				presigned = r2.Header.Get("Location")
			}
		}
		return exists(cached)
	})
	if presigned == "" {
		t.Fatal("no presigned URL was handed out before the erasure")
	}
	if resp, _ := get(t, noFollow, presigned); resp.StatusCode != http.StatusOK {
		t.Fatalf("the presigned URL before the erasure: %s; want 200", resp.Status)
	}

	if bDown {
		if err := b.Stop(30 * time.Second); err != nil {
			t.Fatalf("host B's agent on SIGTERM: %v", err)
		}
	}

	// The operator erases it, with the eraser's grants alone.
	erase := exec.Command(bin["offload-agent"], "erase", "--key-prefix", m.KeyPrefix, "--by", "e2e", "--why", "a person asked", u)
	erase.Env = append(append(os.Environ(), st.Env(t, stacktest.Eraser)...), "AWS_ENDPOINT_URL_S3="+shim)
	if out, err := erase.CombinedOutput(); err != nil {
		t.Fatalf("offload-agent erase: %v\n%s", err, out)
	}

	// S3 holds nothing of the key: no version, no delete marker.
	vs, err := st.S3(t).ListObjectVersions(context.Background(), &s3.ListObjectVersionsInput{Bucket: aws.String(st.Bucket), Prefix: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Versions {
		if aws.ToString(v.Key) == key {
			t.Errorf("version %s of %s is still in S3", aws.ToString(v.VersionId), key)
		}
	}
	for _, d := range vs.DeleteMarkers {
		if aws.ToString(d.Key) == key {
			t.Errorf("a delete marker of %s is still in S3", key)
		}
	}
	// The resolver answers 410 (its cached answer lasts at most a window).
	waitFor(t, "the resolver to answer 410", time.Minute, func() bool {
		resp, _ := get(t, noFollow, "http://"+resolverAddr+u)
		return resp.StatusCode == http.StatusGone
	})
	// The URL handed out before the erasure no longer gets the bytes.
	if resp, _ := get(t, noFollow, presigned); resp.StatusCode < 400 || resp.StatusCode > 499 {
		t.Errorf("the URL presigned before the erasure: %s; want a 4xx (AWS: 403, MinIO: 404)", resp.Status)
	}
	// Host A forgets within a few polls.
	waitFor(t, "host A's archive to lose it", 30*time.Second, func() bool { return !exists(archived) })

	audit := func() (string, int) {
		cmd := exec.Command(bin["offload-agent"], "audit", "--watch", aStatic, "--archive", aArchive, "--key-prefix", m.KeyPrefix,
			"--grace", "0s", "--host-timeout", "3s")
		cmd.Env = append(append(os.Environ(), st.Env(t, stacktest.Audit)...), "AWS_ENDPOINT_URL_S3="+shim)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if bDown {
		// B has not removed its copy: the audit names it, as down.
		waitFor(t, "the audit to name host B", 30*time.Second, func() bool {
			out, code := audit()
			return code == 1 && strings.Contains(out, "erasure-pending") && strings.Contains(out, "b (down")
		})
		if !exists(cached) {
			t.Fatal("host B's cache lost the file while its agent was down")
		}
		b = startB()
	}
	waitFor(t, "host B's cache to lose it", 30*time.Second, func() bool { return !exists(cached) })
	waitFor(t, "the audit to report the erasure complete", 30*time.Second, func() bool {
		out, code := audit()
		if code != 0 {
			t.Logf("audit, exit %d:\n%s", code, out)
		}
		return code == 0
	})
	if resp, _ := get(t, noFollow, web+u); resp.StatusCode == http.StatusOK {
		t.Errorf("host B's web server still serves the erased original")
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/photosleeve/offload/infra/local/loopback"
	"github.com/photosleeve/offload/infra/local/templatepolicy"
)

// The CDN scenario (issue 28): the hot cache scenario's originals and
// stream (same seed), sent four times: with the redirects leading to S3
// and to a local CloudFront edge (infra/local/edge, "stackctl edge"), each
// without and with the host's cache at the default threshold.
const (
	cdnThreshold = 3
	// cdnSecretID is the Secrets Manager secret the resolver reads its
	// CloudFront private key from (the stand-in's, "stackctl
	// secrets-manager").
	cdnSecretID = "offload-bench-cdn-private-key"
)

// The CDN scenario's size (--cdn-requests, --cdn-originals).
var cdnRequests, cdnOriginals int

// cdnRun is one of the scenario's four runs.
type cdnRun struct {
	name      string
	cdn       bool
	threshold int // 0: no host cache
}

// cdnBench offloads the originals once, sends the same stream in the four
// runs and prints the counts and the cost per 1,000 views of each.
func (b *bench) cdnBench(ctx context.Context, resolverBin string) error {
	fmt.Printf("\n## CDN: %d originals (photo-size mix), Zipf(s=%.1f) stream of %d requests through lighttpd, %d clients; S3 direct and through a local CloudFront edge, without and with the host cache (%.0f%% of the bytes, threshold %d)\n",
		cdnOriginals, cacheZipfS, cdnRequests, cacheClients, cacheShare*100, cdnThreshold)
	shim := os.Getenv("OFFLOAD_AWS_SHIM_S3")
	if shim == "" {
		return errors.New("the stack exported no OFFLOAD_AWS_SHIM_S3, the edge's origin: run inside this version of infra/local/stack")
	}
	o, err := b.offloadOriginals(ctx, "cdn", cdnOriginals)
	if err != nil {
		return err
	}
	defer b.deletePrefix(ctx, o.prefix)
	dir, www, files, budget, prefix := o.dir, o.www, o.files, o.budget, o.prefix
	fmt.Printf("(cache budget %d MiB)\n", budget>>20)

	stackctl := filepath.Join(dir, "stackctl")
	if _, err := command(ctx, nil, "go", "build", "-o", stackctl, "./infra/local/stackctl"); err != nil {
		return fmt.Errorf("building stackctl: %w", err)
	}
	key, err := newCDNKey(dir)
	if err != nil {
		return err
	}
	secrets, stopSecrets, err := startSecretsManager(ctx, stackctl, dir, key)
	if err != nil {
		return err
	}
	defer stopSecrets()

	stream := zipfStream(files, cdnRequests)
	client, err := b.browser()
	if err != nil {
		return err
	}
	runs := []cdnRun{
		{"S3 direct, no cache", false, 0},
		{fmt.Sprintf("S3 direct, cache %d", cdnThreshold), false, cdnThreshold},
		{"CDN, no cache", true, 0},
		{fmt.Sprintf("CDN, cache %d", cdnThreshold), true, cdnThreshold},
	}
	var costs []costRun
	for _, r := range runs {
		started := time.Now()
		res, st, err := b.cdnRunOnce(ctx, r, resolverBin, stackctl, shim, secrets, key, dir, www, prefix, budget, stream, client)
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		fmt.Printf("(%s: %s)\n", r.name, time.Since(started).Round(time.Second))
		costs = append(costs, costRun{r.name, res, st, r.cdn})
	}
	printCDNCounts(costs)
	printCostTable(costs, costs[0].res.resolverP50, "of S3 direct without the cache")
	return nil
}

// cdnRunOnce sends the stream once. For a CDN run it starts a fresh edge
// (an empty cache) and gives the resolver the CDN's settings; the edge is
// stopped by its PID at the end.
func (b *bench) cdnRunOnce(ctx context.Context, r cdnRun, resolverBin, stackctl, shim, secrets string, key cdnKey,
	dir, www, prefix string, budget int64, stream []cacheFile, client *http.Client) (streamResult, cacheStatus, error) {
	var resolverEnv []string
	if r.cdn {
		edgeDir, err := os.MkdirTemp(dir, "edge-")
		if err != nil {
			return streamResult{}, cacheStatus{}, err
		}
		defer os.RemoveAll(edgeDir)
		url, stopEdge, err := b.startEdge(ctx, stackctl, shim, edgeDir, key)
		if err != nil {
			return streamResult{}, cacheStatus{}, err
		}
		defer stopEdge()
		resolverEnv = []string{"AWS_ENDPOINT_URL_SECRETS_MANAGER=" + secrets,
			"OFFLOAD_CDN_URL=" + url, "OFFLOAD_CDN_KEY_PAIR_ID=" + key.id, "OFFLOAD_CDN_PRIVATE_KEY_SECRET=" + cdnSecretID}
	}
	// No probes: the time to the first local 200 is the hot cache
	// scenario's, and the probes' polling would slow the runs with the
	// cache only.
	res, st, err := b.cacheRun(ctx, resolverBin, dir, www, prefix, budget, stream, client, runOpts{threshold: r.threshold, resolverEnv: resolverEnv})
	if err != nil {
		return res, st, err
	}
	if r.cdn && res.edgeHits+res.edgeMisses != res.redirects {
		return res, st, fmt.Errorf("%d redirects, but the edge answered %d hits and %d misses", res.redirects, res.edgeHits, res.edgeMisses)
	}
	if !r.cdn && res.edgeHits+res.edgeMisses != 0 {
		return res, st, fmt.Errorf("the redirects led to S3, yet %d answers said X-Cache", res.edgeHits+res.edgeMisses)
	}
	return res, st, nil
}

// printCDNCounts prints what each run sent where.
func printCDNCounts(runs []costRun) {
	fmt.Printf("%-20s %9s %10s %10s %10s %8s %12s %14s %12s %14s\n", "run", "local", "redirects", "edge hits", "misses", "hit %",
		"S3 GETs", "cache fetches", "to browsers", "S3 → internet")
	for _, r := range runs {
		hit, s3gets := "", r.res.redirects+r.st.Fetches
		if r.cdn {
			hit = fmt.Sprintf("%.1f%%", 100*float64(r.res.edgeHits)/float64(max(1, r.res.redirects)))
			s3gets = r.res.edgeMisses + r.st.Fetches
		}
		toS3Out := r.st.FetchedBytes // the host cache's fetches
		if !r.cdn {
			toS3Out += r.res.bytesS3
		}
		fmt.Printf("%-20s %8.1f%% %10d %10d %10d %8s %12d %14d %9d MiB %10d MiB\n", r.name,
			100*float64(r.res.local)/float64(r.res.local+r.res.redirects), r.res.redirects, r.res.edgeHits, r.res.edgeMisses, hit,
			s3gets, r.st.Fetches, (r.res.bytesLocal+r.res.bytesS3)>>20, toS3Out>>20)
	}
	fmt.Println("(local: answered 200 by lighttpd from the host cache; redirects: Lambda invocations; edge hits and misses: X-Cache of the")
	fmt.Println(" browsers' GETs after a redirect, a miss being one origin fetch of the whole object from S3; S3 GETs: the browsers' (S3 direct)")
	fmt.Println(" or the edge's misses (CDN), plus the host cache's fetches; to browsers: the originals' bytes the views carried;")
	fmt.Println(" S3 → internet: the bytes billed at S3's transfer price, the browsers' (S3 direct) and the host cache's fetches)")
	for _, r := range runs {
		fmt.Printf("%s: resolver median %s per redirect", r.name, r.res.resolverP50.Round(time.Microsecond))
		if r.cdn {
			fmt.Printf("; the edge fetched %d MiB from S3 for its misses (no transfer charge)", r.res.bytesEdgeMiss>>20)
		}
		fmt.Println()
	}
}

// cdnKey is the distribution's key pair: an ECDSA P-256 key, the kind
// lambda/cdnsign prefers, written as PEM files.
type cdnKey struct {
	id                   string // Key-Pair-Id, in CloudFront's form
	privateFile, pubFile string
}

// newCDNKey makes a fresh key pair in dir: the unencrypted PKCS#8 private
// key the resolver reads from the secret, the PKIX public key the edge's
// key group trusts.
func newCDNKey(dir string) (cdnKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return cdnKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return cdnKey{}, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return cdnKey{}, err
	}
	k := cdnKey{id: "K" + randomCaps(13), privateFile: filepath.Join(dir, "cdn-private.pem"), pubFile: filepath.Join(dir, "cdn-public.pem")}
	if err := os.WriteFile(k.privateFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return cdnKey{}, err
	}
	if err := os.WriteFile(k.pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return cdnKey{}, err
	}
	return k, nil
}

// randomCaps returns n random capitals and digits, as CloudFront's IDs.
func randomCaps(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// startSecretsManager starts the Secrets Manager stand-in with the private
// key as cdnSecretID, readable by the stack's root access key (the
// resolver's here, as in the hot cache scenario), and returns its endpoint
// and how to stop it (by PID).
func startSecretsManager(ctx context.Context, stackctl, dir string, key cdnKey) (string, func(), error) {
	addr, err := loopback.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, stackctl, "secrets-manager", "--listen", addr,
		"--allow", os.Getenv("AWS_ACCESS_KEY_ID"), "--secret", cdnSecretID+"="+key.privateFile)
	logFile := filepath.Join(dir, "secrets-manager.log")
	if err := startLogged(ctx, cmd, addr, logFile); err != nil {
		return "", nil, fmt.Errorf("secrets manager stand-in: %w", err)
	}
	return "http://" + addr, func() { stop(cmd) }, nil
}

// startEdge starts a local CloudFront edge ("stackctl edge", as
// stacktest.StartEdge does) with an empty cache in dir, trusting key,
// reading the origin through the AWS shim with the stack's cloudfront
// component's credentials, and returns its URL and how to stop it (by PID).
func (b *bench) startEdge(ctx context.Context, stackctl, shim, dir string, key cdnKey) (string, func(), error) {
	creds := make([]string, 0, 3)
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		val := os.Getenv("OFFLOAD_" + strings.ToUpper(templatepolicy.Cloudfront) + "_" + v)
		if val == "" && v != "AWS_SESSION_TOKEN" {
			return "", nil, fmt.Errorf("the stack exported no credentials for the CloudFront edge (OFFLOAD_CLOUDFRONT_%s): run inside this version of infra/local/stack", v)
		}
		creds = append(creds, v+"="+val)
	}
	addr, err := loopback.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	apiAddr, err := loopback.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	repo, err := os.Getwd()
	if err != nil {
		return "", nil, err
	}
	args := []string{"edge", "--listen", addr, "--api-listen", apiAddr, "--origin", shim, "--bucket", b.env.bucket,
		"--region", b.env.region, "--distribution-id", "E" + randomCaps(13), "--api-access-keys", os.Getenv("AWS_ACCESS_KEY_ID"),
		"--template", templatepolicy.TemplatePath(repo), "--cache-dir", filepath.Join(dir, "cache"),
		"--public-key", key.id + "=" + key.pubFile}
	if b.env.ca != "" {
		args = append(args, "--ca", b.env.ca)
	}
	cmd := exec.CommandContext(ctx, stackctl, args...)
	cmd.Env = append(os.Environ(), creds...) // the later entries win
	if err := startLogged(ctx, cmd, addr, filepath.Join(dir, "edge.log")); err != nil {
		return "", nil, fmt.Errorf("edge: %w", err)
	}
	if err := loopback.WaitListening(ctx, apiAddr, 30*time.Second); err != nil {
		stop(cmd)
		return "", nil, fmt.Errorf("edge API: %w", err)
	}
	return "http://" + addr, func() { stop(cmd) }, nil
}

// startLogged starts cmd with its output in logFile and waits until it
// listens on addr; if it does not, the error ends with the log's tail.
func startLogged(ctx context.Context, cmd *exec.Cmd, addr, logFile string) error {
	f, err := os.Create(logFile)
	if err != nil {
		return err
	}
	defer f.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = f, f
	if err := startAndWait(ctx, cmd, addr); err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("%w; its log ends: %s", err, tail(string(log), 2000))
	}
	return nil
}

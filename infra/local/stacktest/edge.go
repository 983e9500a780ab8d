package stacktest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"

	"github.com/photosleeve/offload/infra/local/edge"
	"github.com/photosleeve/offload/infra/local/templatepolicy"
)

// Cloudfront is the component CloudFront's Origin Access Control stands
// for: the local edge reads the bucket with its credentials, restricted to
// the bucket policy's AllowCloudFrontRead statement.
const Cloudfront = templatepolicy.Cloudfront

// EdgeOptions configure StartEdge.
type EdgeOptions struct {
	// KeyGroup is the distribution's trusted key group: PEM public keys
	// ("PUBLIC KEY", RSA 2048 or ECDSA P-256) by their ID, the Key-Pair-Id
	// of a signed URL. At least one.
	KeyGroup map[string][]byte
	// APIAccessKeys are the access keys whose SigV4 requests the API
	// endpoint accepts (CreateInvalidation, GetInvalidation); others get
	// 403 AccessDenied. Empty: the stack's root key, AWS_ACCESS_KEY_ID.
	APIAccessKeys []string
	// DistributionID is the ID the API endpoint answers for. Empty: a
	// fresh one, in CloudFront's form (E and 13 capitals or digits).
	DistributionID string
}

// Edge is a local CloudFront edge (infra/local/edge, run as "stackctl
// edge") in front of the stack's bucket: it serves canned-policy signed
// URLs from a disk cache filled from MinIO through the AWS shim, with the
// cache policy of template.yaml's CdnCachePolicy and the cloudfront
// component's credentials. It is stopped when the test ends.
type Edge struct {
	// URL is the distribution's base URL, http://127.0.0.1:PORT without a
	// slash: an object's URL is URL + "/" + key.
	URL string
	// APIEndpoint is the CloudFront API endpoint for the SDK's
	// BaseEndpoint (see CloudFront).
	APIEndpoint string
	// DistributionID is the distribution the API endpoint answers for.
	DistributionID string
	// Process is the running edge; its log is Process.Log.
	Process *Process
	stack   *Stack
}

// StartEdge starts a local CloudFront edge for the test on two free
// loopback ports, the distribution's and the API's, and waits until both
// listen. It needs the stack (Require).
func StartEdge(t testing.TB, opts EdgeOptions) *Edge {
	t.Helper()
	s := Require(t)
	if s == nil {
		return nil
	}
	if len(opts.KeyGroup) == 0 {
		t.Fatal("StartEdge: EdgeOptions.KeyGroup is empty: a distribution that trusts a key group needs a key")
	}
	dir := t.TempDir()
	e := &Edge{DistributionID: opts.DistributionID, stack: s}
	if e.DistributionID == "" {
		e.DistributionID = "E" + edge.RandomID(13)
	}
	addr, apiAddr := FreeAddr(t), FreeAddr(t)
	e.URL, e.APIEndpoint = "http://"+addr, "http://"+apiAddr
	allowed := opts.APIAccessKeys
	if len(allowed) == 0 {
		allowed = []string{os.Getenv("AWS_ACCESS_KEY_ID")}
	}
	args := []string{"edge", "--listen", addr, "--api-listen", apiAddr,
		"--origin", s.AWSShimEndpoint(t), "--bucket", s.Bucket, "--region", s.Region,
		"--distribution-id", e.DistributionID, "--api-access-keys", strings.Join(allowed, ","),
		"--template", templatepolicy.TemplatePath(RepoRoot(t)), "--cache-dir", filepath.Join(dir, "cache")}
	if ca := os.Getenv("AWS_CA_BUNDLE"); ca != "" {
		args = append(args, "--ca", ca)
	}
	ids := make([]string, 0, len(opts.KeyGroup))
	for id := range opts.KeyGroup {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		path := filepath.Join(dir, id+".pem")
		if err := os.WriteFile(path, opts.KeyGroup[id], 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--public-key", id+"="+path)
	}
	bin := Build(t, "./infra/local/stackctl")["stackctl"]
	e.Process = Start(t, s.Env(t, Cloudfront), filepath.Join(dir, "edge.log"), bin, args...)
	WaitListening(t, addr)
	WaitListening(t, apiAddr)
	return e
}

// CloudFront returns a CloudFront API client for the edge's API endpoint,
// signed with the stack's root credentials (allowed unless
// EdgeOptions.APIAccessKeys says otherwise).
func (e *Edge) CloudFront(t testing.TB) *cloudfront.Client {
	t.Helper()
	return cloudfront.NewFromConfig(e.stack.AWSConfig(t), func(o *cloudfront.Options) {
		o.BaseEndpoint = aws.String(e.APIEndpoint)
	})
}

// XCache is the answer's X-Cache header, as CloudFront sends it: "Hit from
// cloudfront", "Miss from cloudfront", or "Error from cloudfront".
func XCache(resp *http.Response) string { return resp.Header.Get("X-Cache") }

// Hit reports whether the edge served resp from its cache.
func Hit(resp *http.Response) bool { return XCache(resp) == "Hit from cloudfront" }

// The key types CloudFront takes in a trusted key group.
const (
	KeyECDSA = "ecdsa-p256"
	KeyRSA   = "rsa-2048"
)

// EdgeKey is a fresh key pair for signed URLs.
type EdgeKey struct {
	// ID is a Key-Pair-Id in CloudFront's form (K and 13 capitals or digits).
	ID string
	// PrivateKeyPEM is the unencrypted PKCS#8 "PRIVATE KEY", as
	// lambda/cdnsign.New takes it.
	PrivateKeyPEM []byte
	// PublicKeyPEM is the PKIX "PUBLIC KEY", as CloudFront's PublicKey
	// takes it (and EdgeOptions.KeyGroup).
	PublicKeyPEM []byte
}

// NewEdgeKey makes a key pair of kind (KeyECDSA or KeyRSA) for one test.
func NewEdgeKey(t testing.TB, kind string) EdgeKey {
	t.Helper()
	var key any
	var err error
	switch kind {
	case KeyECDSA:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("NewEdgeKey: kind %q: want %s or %s", kind, KeyECDSA, KeyRSA)
	}
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.(crypto.Signer).Public())
	if err != nil {
		t.Fatal(err)
	}
	return EdgeKey{ID: "K" + edge.RandomID(13),
		PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}),
		PublicKeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})}
}

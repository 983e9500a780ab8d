package edge_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudfront/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/infra/local/stacktest"
	"github.com/photosleeve/offload/lambda/cdnsign"
)

// edgeWorld is one test's edge in front of the stack's bucket, two keys
// in its key group (ECDSA and RSA) and signers for them.
type edgeWorld struct {
	t          *testing.T
	st         *stacktest.Stack
	s3         *s3.Client // the stack's root user: uploads and deletes
	edge       *stacktest.Edge
	ecdsa, rsa *cdnsign.Signer
	http       *http.Client
}

func newEdgeWorld(t *testing.T) *edgeWorld {
	t.Helper()
	st := stacktest.Require(t)
	ek, rk := stacktest.NewEdgeKey(t, stacktest.KeyECDSA), stacktest.NewEdgeKey(t, stacktest.KeyRSA)
	w := &edgeWorld{t: t, st: st, s3: st.S3(t), http: stacktest.HTTPClient(t),
		edge: stacktest.StartEdge(t, stacktest.EdgeOptions{KeyGroup: map[string][]byte{ek.ID: ek.PublicKeyPEM, rk.ID: rk.PublicKeyPEM}})}
	var err error
	if w.ecdsa, err = cdnsign.New(ek.ID, ek.PrivateKeyPEM); err != nil {
		t.Fatal(err)
	}
	if w.rsa, err = cdnsign.New(rk.ID, rk.PrivateKeyPEM); err != nil {
		t.Fatal(err)
	}
	return w
}

// put uploads a version of key and returns its version id.
func (w *edgeWorld) put(key string, data []byte) string {
	w.t.Helper()
	out, err := w.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(w.st.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(data), ContentType: aws.String("image/jpeg")})
	if err != nil {
		w.t.Fatal(err)
	}
	return aws.ToString(out.VersionId)
}

// signed returns the edge's URL for key (and the query, if any) signed by
// signer, valid for a minute.
func (w *edgeWorld) signed(signer *cdnsign.Signer, key, query string) string {
	w.t.Helper()
	u := w.edge.URL + "/" + key
	if query != "" {
		u += "?" + query
	}
	s, err := signer.Sign(u, time.Now().Add(time.Minute))
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

// answer is what the edge answered.
type answer struct {
	status int
	body   []byte
	header http.Header
}

func (a answer) hit() bool { return a.header.Get("X-Cache") == "Hit from cloudfront" }

func (w *edgeWorld) do(method, url string, header ...string) answer {
	w.t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := w.http.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, body: body, header: resp.Header}
}

// get GETs url and wants a 200 with want, a hit or a miss as said.
func (w *edgeWorld) get(what, url string, want []byte, hit bool) {
	w.t.Helper()
	a := w.do(http.MethodGet, url)
	if a.status != http.StatusOK || !bytes.Equal(a.body, want) {
		w.t.Fatalf("%s: %d %q; want 200 %q", what, a.status, a.body, want)
	}
	if a.hit() != hit {
		w.t.Errorf("%s: X-Cache %q; want a hit: %v", what, a.header.Get("X-Cache"), hit)
	}
}

// TestEdgeServesTheSignedVersion is the classic pitfall of a cache in
// front of a versioned bucket: with v2 cached, a URL for v1 must still get
// v1's bytes (versionId is in the cache key), and every signed URL for v2
// shares one cached copy (the signature is not).
func TestEdgeServesTheSignedVersion(t *testing.T) {
	w := newEdgeWorld(t)
	key := stacktest.Prefix(t) + "photo.jpg"
	v1data, v2data := []byte("version one"), []byte("version two, longer")
	v1, v2 := w.put(key, v1data), w.put(key, v2data)

	w.get("v2, first", w.signed(w.ecdsa, key, "versionId="+v2), v2data, false)
	w.get("v2, another signature (RSA, SHA-1)", w.signed(w.rsa, key, "versionId="+v2), v2data, true)
	w.get("v1 with v2 cached", w.signed(w.ecdsa, key, "versionId="+v1), v1data, false)
	w.get("v1 again", w.signed(w.rsa, key, "versionId="+v1), v1data, true)
	w.get("v2 after v1", w.signed(w.ecdsa, key, "versionId="+v2), v2data, true)
	w.get("the current version (no versionId)", w.signed(w.ecdsa, key, ""), v2data, false)
	w.get("response-content-type is in the cache key", w.signed(w.ecdsa, key, "versionId="+v2+"&response-content-type=image%2Fpng"), v2data, false)
}

// TestEdgeRefuses: what CloudFront refuses with 403 before it looks at
// its cache: an unsigned URL, a signed URL changed after signing, an
// expired one, a key not in the key group, a method the behaviour does
// not allow.
func TestEdgeRefuses(t *testing.T) {
	w := newEdgeWorld(t)
	key := stacktest.Prefix(t) + "photo.jpg"
	v1, v2 := w.put(key, []byte("one")), w.put(key, []byte("two"))
	good := w.signed(w.ecdsa, key, "versionId="+v2)
	w.get("as signed", good, []byte("two"), false) // cached: a refusal must not be a hit

	sig := good[strings.Index(good, "Signature=")+len("Signature="):]
	sig = sig[:strings.Index(sig, "&")]
	flip := "A"
	if sig[5] == 'A' {
		flip = "B"
	}
	expired, err := w.ecdsa.Sign(w.edge.URL+"/"+key+"?versionId="+v2, time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	stranger := stacktest.NewEdgeKey(t, stacktest.KeyECDSA)
	strangerSigner, err := cdnsign.New(stranger.ID, stranger.PrivateKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, url, code string
	}{
		{"another versionId", http.MethodGet, strings.Replace(good, "versionId="+v2, "versionId="+v1, 1), "AccessDenied"},
		{"a signature character changed", http.MethodGet, strings.Replace(good, sig, sig[:5]+flip+sig[6:], 1), "AccessDenied"},
		{"expired", http.MethodGet, expired, "AccessDenied"},
		{"unsigned", http.MethodGet, w.edge.URL + "/" + key + "?versionId=" + v2, "MissingKey"},
		{"a key not in the key group", http.MethodGet, w.signed(strangerSigner, key, "versionId="+v2), "AccessDenied"},
		{"POST", http.MethodPost, good, ""},
		{"DELETE", http.MethodDelete, good, ""},
	} {
		a := w.do(tc.method, tc.url)
		if a.status != http.StatusForbidden {
			t.Errorf("%s: %d %q; want 403", tc.name, a.status, a.body)
			continue
		}
		if tc.code != "" && !bytes.Contains(a.body, []byte("<Code>"+tc.code+"</Code>")) {
			t.Errorf("%s: body %q; want CloudFront's %s", tc.name, a.body, tc.code)
		}
		if got := a.header.Get("X-Cache"); got != "Error from cloudfront" {
			t.Errorf("%s: X-Cache %q; want Error from cloudfront", tc.name, got)
		}
	}
}

// TestEdgeHeadAndRange: HEAD and ranges are served from the cached copy
// with the whole object's length.
func TestEdgeHeadAndRange(t *testing.T) {
	w := newEdgeWorld(t)
	key := stacktest.Prefix(t) + "photo.jpg"
	data := []byte("0123456789abcdef")
	v := w.put(key, data)

	head := w.do(http.MethodHead, w.signed(w.rsa, key, "versionId="+v))
	if head.status != http.StatusOK || head.header.Get("Content-Length") != strconv.Itoa(len(data)) || len(head.body) != 0 {
		t.Errorf("HEAD: %d, Content-Length %q, %d body bytes; want 200, %d, none", head.status, head.header.Get("Content-Length"), len(head.body), len(data))
	}
	if got := head.header.Get("Content-Type"); got != "image/jpeg" {
		t.Errorf("HEAD: Content-Type %q; want the origin's image/jpeg", got)
	}
	part := w.do(http.MethodGet, w.signed(w.ecdsa, key, "versionId="+v), "Range", "bytes=2-5")
	if part.status != http.StatusPartialContent || string(part.body) != "2345" || !part.hit() {
		t.Errorf("Range 2-5: %d %q, X-Cache %q; want 206 \"2345\" from the cache", part.status, part.body, part.header.Get("X-Cache"))
	}
	if got, want := part.header.Get("Content-Range"), "bytes 2-5/16"; got != want {
		t.Errorf("Content-Range %q; want %q", got, want)
	}
}

// TestEdgeInvalidation: CreateInvalidation through the SDK's client drops
// the cached copies its paths match, as "Invalidate files" describes:
// "/KEY" alone leaves the copies cached with a query string; "/KEY*" drops
// them. An object deleted at the origin is then a 403 (CloudFront has no
// s3:ListBucket). A caller whose access key is not allowed is refused.
func TestEdgeInvalidation(t *testing.T) {
	w := newEdgeWorld(t)
	key := stacktest.Prefix(t) + "photo.jpg"
	v := w.put(key, []byte("cached"))
	versioned, current := w.signed(w.ecdsa, key, "versionId="+v), w.signed(w.ecdsa, key, "")
	w.get("versioned, first", versioned, []byte("cached"), false)
	w.get("current, first", current, []byte("cached"), false)

	cf := w.edge.CloudFront(t)
	ctx := context.Background()
	invalidate := func(paths ...string) *cloudfront.CreateInvalidationOutput {
		t.Helper()
		out, err := cf.CreateInvalidation(ctx, &cloudfront.CreateInvalidationInput{DistributionId: aws.String(w.edge.DistributionID),
			InvalidationBatch: &cftypes.InvalidationBatch{CallerReference: aws.String(strconv.FormatInt(time.Now().UnixNano(), 10)),
				Paths: &cftypes.Paths{Quantity: aws.Int32(int32(len(paths))), Items: paths}}})
		if err != nil {
			t.Fatalf("CreateInvalidation %v: %v", paths, err)
		}
		return out
	}
	invalidate("/" + key)
	w.get("current, after /KEY", current, []byte("cached"), false)
	w.get("versioned, after /KEY", versioned, []byte("cached"), true)

	out := invalidate("/" + key + "*")
	w.get("versioned, after /KEY*", versioned, []byte("cached"), false)
	got, err := cf.GetInvalidation(ctx, &cloudfront.GetInvalidationInput{DistributionId: aws.String(w.edge.DistributionID), Id: out.Invalidation.Id})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(got.Invalidation.Status) != "Completed" || got.Invalidation.InvalidationBatch.Paths.Items[0] != "/"+key+"*" {
		t.Errorf("GetInvalidation: %s %v; want Completed with the path", aws.ToString(got.Invalidation.Status), got.Invalidation.InvalidationBatch.Paths.Items)
	}

	w.get("current, after /KEY*", current, []byte("cached"), false)

	// Deleted at the origin (a delete marker): cached until invalidated,
	// then CloudFront's read is refused as AWS refuses a missing key to
	// a caller without s3:ListBucket.
	if _, err := w.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(w.st.Bucket), Key: aws.String(key)}); err != nil {
		t.Fatal(err)
	}
	w.get("current, deleted at the origin, still cached", current, []byte("cached"), true)
	invalidate("/" + key)
	want := http.StatusForbidden
	if w.st.S3Kind == "versitygw" {
		want = http.StatusNotFound // no policy, no shim: the edge reads as root there
	}
	if a := w.do(http.MethodGet, current); a.status != want {
		t.Errorf("current, deleted and invalidated: %d %q; want %d", a.status, a.body, want)
	}

	if _, err := w.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(w.st.Bucket), Key: aws.String(key), VersionId: aws.String(v)}); err != nil {
		t.Fatal(err)
	}
	// The version itself deleted: not served once invalidated. MinIO
	// answers 404 NoSuchVersion and the AWS shim passes it on (it maps
	// only NoSuchKey to AWS's 403), so a 4xx is wanted, not a 403.
	invalidate("/" + key + "*")
	if a := w.do(http.MethodGet, versioned); a.status < 400 || a.status > 499 || a.hit() {
		t.Errorf("versioned, its version deleted and invalidated: %d, X-Cache %q; want a 4xx from the origin", a.status, a.header.Get("X-Cache"))
	}

	agent := cloudfront.NewFromConfig(w.st.ConfigFor(t, stacktest.Agent), func(o *cloudfront.Options) { o.BaseEndpoint = aws.String(w.edge.APIEndpoint) })
	_, err = agent.CreateInvalidation(ctx, &cloudfront.CreateInvalidationInput{DistributionId: aws.String(w.edge.DistributionID),
		InvalidationBatch: &cftypes.InvalidationBatch{CallerReference: aws.String("agent"), Paths: &cftypes.Paths{Quantity: aws.Int32(1), Items: []string{"/*"}}}})
	var denied *cftypes.AccessDenied
	if !errors.As(err, &denied) {
		t.Errorf("CreateInvalidation by a caller not allowed: %v; want AccessDenied", err)
	}
	_, err = cf.CreateInvalidation(ctx, &cloudfront.CreateInvalidationInput{DistributionId: aws.String("EOTHERDISTRIBUTION"),
		InvalidationBatch: &cftypes.InvalidationBatch{CallerReference: aws.String("other"), Paths: &cftypes.Paths{Quantity: aws.Int32(1), Items: []string{"/*"}}}})
	var noDist *cftypes.NoSuchDistribution
	if !errors.As(err, &noDist) {
		t.Errorf("CreateInvalidation of another distribution: %v; want NoSuchDistribution", err)
	}
}

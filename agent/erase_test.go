package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// eraseWorld is one original with everything erase must remove and its
// neighbours that it must not: a.jpg offloaded by the agent (the recorded
// version), a second version and a delete marker over it, and an open
// multipart upload of it; a.jpg.bak (an object and an upload) and
// a.jpg/x (an object), whose keys start with a.jpg's.
type eraseWorld struct {
	*harness
	bin    string
	key    string
	record offload.Record // the ledger item before the erase
}

func newEraseWorld(t *testing.T) *eraseWorld {
	t.Helper()
	h := newHarness(t)
	w := &eraseWorld{harness: h, bin: buildAgent(t), key: h.key("a.jpg")}
	h.write("a.jpg", randomBytes(2000, 1))
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	w.record = h.ledgerItem("a.jpg")
	ctx := context.Background()
	put := func(key string, data []byte) {
		t.Helper()
		if _, err := h.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	upload := func(key string) {
		t.Helper()
		if _, err := h.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(key)}); err != nil {
			t.Fatalf("create upload %s: %v", key, err)
		}
	}
	put(w.key, randomBytes(100, 2))
	// The marker comes before a.jpg/x: MinIO refuses a key under one
	// whose latest version is an object.
	if _, err := h.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(w.key)}); err != nil {
		t.Fatalf("delete marker: %v", err)
	}
	upload(w.key)
	put(w.key+".bak", []byte("bak"))
	upload(w.key + ".bak")
	put(w.key+"/x", []byte("x"))
	if got, want := w.versions(), map[string]int{w.key: 3, w.key + ".bak": 1, w.key + "/x": 1}; !mapsEqual(got, want) {
		t.Fatalf("before the erase: versions and markers %v; want %v", got, want)
	}
	return w
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// versions counts the versions and delete markers of a.jpg and a.jpg.bak,
// and a.jpg/x's current version. MinIO stores a key as a folder, and while
// a.jpg has versions its listings leave a.jpg/x out (even by the prefix
// a.jpg/x), so a.jpg/x is read with a HEAD instead; on AWS erase's
// listing of a.jpg shows it and erase leaves it out.
func (w *eraseWorld) versions() map[string]int {
	w.t.Helper()
	n := map[string]int{}
	if _, err := w.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(w.st.Bucket), Key: aws.String(w.key + "/x")}); err == nil {
		n[w.key+"/x"] = 1
	}
	for _, key := range []string{w.key, w.key + ".bak"} {
		p := s3.NewListObjectVersionsPaginator(w.s3, &s3.ListObjectVersionsInput{Bucket: aws.String(w.st.Bucket), Prefix: aws.String(key)})
		for p.HasMorePages() {
			page, err := p.NextPage(context.Background())
			if err != nil {
				w.t.Fatalf("ListObjectVersions: %v", err)
			}
			for _, v := range page.Versions {
				if aws.ToString(v.Key) == key {
					n[key]++
				}
			}
			for _, m := range page.DeleteMarkers {
				if aws.ToString(m.Key) == key {
					n[key]++
				}
			}
		}
	}
	return n
}

// item is the key's ledger item as stored, attribute by attribute.
func (w *eraseWorld) item() map[string]string {
	w.t.Helper()
	out, err := w.db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(w.st.Table),
		Key:            map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: w.key}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		w.t.Fatalf("ledger GetItem: %v", err)
	}
	m := map[string]string{}
	for k, v := range out.Item {
		if s, ok := v.(*dbtypes.AttributeValueMemberS); ok {
			m[k] = s.Value
		}
	}
	return m
}

// erase runs "offload-agent erase" on /static/a.jpg with the eraser's
// credentials (then extraEnv, which may replace them), S3 through the AWS
// shim.
func (w *eraseWorld) erase(extraEnv ...string) (stdout, stderr string, code int) {
	w.t.Helper()
	return w.eraseArgs([]string{"/static/a.jpg"}, extraEnv...)
}

// eraseArgs is erase with other flags and names than /static/a.jpg.
func (w *eraseWorld) eraseArgs(args []string, extraEnv ...string) (stdout, stderr string, code int) {
	w.t.Helper()
	cmd := exec.Command(w.bin, append([]string{"erase", "--bucket", w.st.Bucket, "--table", w.st.Table,
		"--key-prefix", w.cfg.Mapping.KeyPrefix, "--url-prefix", "/static/",
		"--by", "tester", "--why", "the subject's request"}, args...)...)
	cmd.Env = w.commandEnv(stacktest.Eraser, extraEnv...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, io.MultiWriter(&errOut, testWriter{w.t})
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatal(err)
	}
	w.t.Logf("erase: exit %d, stdout:\n%s", code, out.String())
	return out.String(), errOut.String(), code
}

// assertErased: no version, marker or upload of a.jpg is left, its
// neighbours are untouched, and the ledger item is a finished tombstone.
func (w *eraseWorld) assertErased() {
	w.t.Helper()
	if got, want := w.versions(), map[string]int{w.key + ".bak": 1, w.key + "/x": 1}; !mapsEqual(got, want) {
		w.t.Errorf("after the erase: versions and markers %v; want only the neighbours' %v", got, want)
	}
	if got, want := w.multipartUploads(), []string{w.key + ".bak"}; !slices.Equal(got, want) {
		w.t.Errorf("after the erase: uploads %q; want only %q", got, want)
	}
	item := w.item()
	for attr, want := range map[string]string{
		offload.ErasedInAttr: offload.ErasedPartition(w.cfg.Mapping.KeyPrefix), offload.ErasedByAttr: "tester",
		offload.ErasedWhyAttr: "the subject's request", "version_id": w.record.VersionID,
	} {
		if item[attr] != want {
			w.t.Errorf("ledger item %s = %q; want %q", attr, item[attr], want)
		}
	}
	for _, attr := range []string{offload.ErasedAtAttr, offload.EraseDoneAttr} {
		if _, err := time.Parse(time.RFC3339Nano, item[attr]); err != nil {
			w.t.Errorf("ledger item %s = %q; want a time (%v)", attr, item[attr], err)
		}
	}
}

// TestEraseRemovesEveryVersionOfExactlyOneKey: erase removes every version,
// delete marker and open upload of exactly the key it is given, marks the
// ledger item (who, why, when, done) and leaves keys that merely start with
// it alone.
func TestEraseRemovesEveryVersionOfExactlyOneKey(t *testing.T) {
	t.Parallel()
	w := newEraseWorld(t)
	out, _, code := w.erase()
	if code != 0 {
		t.Fatalf("erase: exit %d; want 0", code)
	}
	w.assertErased()
	for _, want := range []string{w.key, "2 versions", "1 delete marker", "1 upload", "erased"} {
		if !strings.Contains(out, want) {
			t.Errorf("erase's report does not say %q:\n%s", want, out)
		}
	}
}

// TestEraseTwiceIsHarmless: a second erase of the same key finds nothing
// to remove, stamps the erasure again (not before the first), and exits 0.
func TestEraseTwiceIsHarmless(t *testing.T) {
	t.Parallel()
	w := newEraseWorld(t)
	if _, _, code := w.erase(); code != 0 {
		t.Fatalf("first erase: exit %d; want 0", code)
	}
	first := w.item()[offload.ErasedAtAttr]
	out, _, code := w.erase()
	if code != 0 {
		t.Fatalf("second erase: exit %d; want 0", code)
	}
	w.assertErased()
	if got := w.item()[offload.ErasedAtAttr]; got < first {
		t.Errorf("second erase: %s %q; want the first's, %q, or later", offload.ErasedAtAttr, got, first)
	}
	if !strings.Contains(out, "0 versions, 0 delete markers, 0 uploads") {
		t.Errorf("second erase's report; want nothing removed:\n%s", out)
	}

	// A third, by key and with --json; and a key never recorded nor
	// stored gets a tombstone too (no size), finished in S3, but is
	// reported not done: its name is likely wrong.
	out, _, code = w.eraseArgs([]string{"--json", w.key, w.cfg.Mapping.KeyPrefix + "never.jpg"})
	var reports []agent.EraseReport
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var r struct {
			agent.EraseReport
			Done bool `json:"done"`
		}
		if err := dec.Decode(&r); err != nil {
			break
		}
		never := r.Key != w.key
		if r.Done == never || r.NothingFound != never || r.Versions+r.DeleteMarkers+r.Uploads != 0 {
			t.Errorf("erase --json: %+v; want nothing removed, and done unless the key is never.jpg", r)
		}
		reports = append(reports, r.EraseReport)
	}
	if code != 1 || len(reports) != 2 || reports[0].Key != w.key || reports[1].Key != w.cfg.Mapping.KeyPrefix+"never.jpg" {
		t.Errorf("erase --json of two keys: exit %d, reports %+v; want 1 and one per key, in order", code, reports)
	}
	never := w.harness.ledgerItem("never.jpg")
	if e := never.Erasure; e == nil || e.Done.IsZero() || e.By != "tester" || never.Size != 0 {
		t.Errorf("a key never recorded, erased: %+v (erasure %+v); want a finished tombstone without a size", never, e)
	}
}

// TestErasePresignedURLStopsWorking: a URL presigned for the recorded
// version before the erase, as the resolver signs it (its credentials,
// through the AWS shim), works before and fails after. MinIO answers 404
// NoSuchVersion; AWS answers 403 to a caller without s3:ListBucket, as the
// resolver is, and the shim does the same: the test wants a 4xx.
func TestErasePresignedURLStopsWorking(t *testing.T) {
	t.Parallel()
	w := newEraseWorld(t)
	presigner := s3.NewPresignClient(w.st.S3For(t, stacktest.Resolver, w.st.AWSShimEndpoint(t)))
	req, err := presigner.PresignGetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(w.st.Bucket), Key: aws.String(w.key),
		VersionId: aws.String(w.record.VersionID)}, s3.WithPresignExpires(15*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := stacktest.StatusOf(t, "GET", req.URL); got != 200 {
		t.Fatalf("presigned URL before the erase: %d; want 200", got)
	}
	if _, _, code := w.erase(); code != 0 {
		t.Fatalf("erase: exit %d; want 0", code)
	}
	got := stacktest.StatusOf(t, "GET", req.URL)
	if got < 400 || got > 499 {
		t.Errorf("presigned URL after the erase: %d; want a 4xx", got)
	}
	t.Logf("presigned URL after the erase: %d", got)
}

// TestEraseWithoutAGrantNamesIt: with credentials from a template copy
// that lacks s3:DeleteObjectVersion, erase exits 1 naming the permission,
// the ledger mark stays and erase_done is absent; a re-run with the
// template's own grants finishes the job.
func TestEraseWithoutAGrantNamesIt(t *testing.T) {
	t.Parallel()
	w := newEraseWorld(t)
	out, errOut, code := w.erase(w.st.EnvWithout(t, stacktest.Eraser, "s3:DeleteObjectVersion")...)
	if code != 1 {
		t.Errorf("erase without s3:DeleteObjectVersion: exit %d; want 1", code)
	}
	if !strings.Contains(out+errOut, "missing permission s3:DeleteObjectVersion") {
		t.Errorf("erase without s3:DeleteObjectVersion does not name it:\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	item := w.item()
	if item[offload.ErasedAtAttr] == "" || item[offload.ErasedByAttr] != "tester" {
		t.Errorf("after the failed erase: ledger item %v; want the mark", item)
	}
	if _, ok := item[offload.EraseDoneAttr]; ok {
		t.Errorf("after the failed erase: %s is set; want it absent", offload.EraseDoneAttr)
	}
	if got := w.versions()[w.key]; got != 3 {
		t.Errorf("after the failed erase: %d versions and markers of the key; want the 3 it could not delete", got)
	}
	if _, _, code := w.erase(); code != 0 {
		t.Fatalf("re-run with the grant: exit %d; want 0", code)
	}
	w.assertErased()
}

// TestErasePastedSignedLink: the operator pastes the link a complaint
// quoted, a signed link with its query (or a fragment): erase cuts it as
// the resolver cuts a request's path, and erases the original it serves.
func TestErasePastedSignedLink(t *testing.T) {
	t.Parallel()
	w := newEraseWorld(t)
	out, _, code := w.eraseArgs([]string{"/static/a.jpg?X-Amz-Expires=900&X-Amz-Signature=abcdef#top"})
	if code != 0 {
		t.Fatalf("erase of a signed link: exit %d; want 0", code)
	}
	w.assertErased()
	if !strings.Contains(out, "erased "+w.key+":") {
		t.Errorf("erase's report does not name %s:\n%s", w.key, out)
	}
}

// TestEraseNameNothingKnows: a name that the ledger never recorded and
// under which S3 holds nothing (a typo, the wrong --key-prefix) is
// reported not done, exit 1, with what to check; the mark stays, so a
// host holding a file by that name removes it.
func TestEraseNameNothingKnows(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w := &eraseWorld{harness: h, bin: buildAgent(t), key: h.key("nothing.jpg")}
	out, errOut, code := w.eraseArgs([]string{"/static/nothing.jpg"})
	if code != 1 {
		t.Errorf("erase of a name nothing knows: exit %d; want 1", code)
	}
	want := "nothing was recorded or stored under " + w.key + ": check the name and --key-prefix"
	if !strings.Contains(out, "NOT DONE "+w.key) || !strings.Contains(out, want) {
		t.Errorf("erase's report of a name nothing knows; want NOT DONE and %q:\nstdout:\n%s\nstderr:\n%s", want, out, errOut)
	}
	if !h.ledgerItem("nothing.jpg").Erased() {
		t.Errorf("the mark of %s is gone; want it kept", w.key)
	}
	// Run again as it was (the operator took it for a passing failure):
	// the first run's mark is no record of an original, so the name is
	// still one nothing knows.
	out, errOut, code = w.eraseArgs([]string{"/static/nothing.jpg"})
	if code != 1 || !strings.Contains(out, "NOT DONE "+w.key) || !strings.Contains(out, want) {
		t.Errorf("the same erase run again: exit %d; want 1, NOT DONE and %q:\nstdout:\n%s\nstderr:\n%s", code, want, out, errOut)
	}
}

// s3Date is S3's clock now: the Date header of a listing's answer.
func (h *harness) s3Date() time.Time {
	h.t.Helper()
	out, err := h.s3.ListObjectVersions(context.Background(), &s3.ListObjectVersionsInput{Bucket: aws.String(h.st.Bucket), MaxKeys: aws.Int32(1)})
	if err != nil {
		h.t.Fatal(err)
	}
	raw, _ := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response)
	if raw == nil {
		h.t.Fatal("no raw response")
	}
	d, err := http.ParseTime(raw.Header.Get("Date"))
	if err != nil {
		h.t.Fatalf("S3's Date header: %v", err)
	}
	return d
}

// eraser is an Eraser with the template's EraserPolicy, S3 at endpoint.
func (h *harness) eraser(endpoint string) *agent.Eraser {
	return &agent.Eraser{S3: h.st.S3For(h.t, stacktest.Eraser, endpoint), DB: h.db, Bucket: h.st.Bucket, Table: h.st.Table,
		KeyPrefix: h.cfg.Mapping.KeyPrefix, By: "tester", Why: "the subject's request"}
}

// TestEraseStampsS3sClock: erased_at is S3's clock, not the eraser's: a
// machine 15 minutes slow (beyond the hosts' overlap) stamps no earlier
// than S3's time before the erase; and a re-run stamps again, so an
// erasure stamped long ago (by a slow clock, before this fix) is looked
// at again by every host.
func TestEraseStampsS3sClock(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.markErased(h.cfg.Mapping.KeyPrefix, h.key("old.jpg"), time.Now().Add(-time.Hour))
	e := h.eraser(h.st.AWSShimEndpoint(t))
	agent.SetEraserClock(e, func() time.Time { return time.Now().Add(-15 * time.Minute) })
	before := h.s3Date()
	for _, rel := range []string{"slow.jpg", "old.jpg"} {
		e.Erase(context.Background(), h.key(rel))
		at := h.ledgerItem(rel).Erasure
		if at == nil || at.At.Before(before) {
			t.Errorf("%s: erasure %+v; want erased_at no earlier than S3's clock before the erase, %s", rel, at, before.Format(time.RFC3339))
		}
	}
}

// TestEraseNotDoneWhenAPutRacesIt: an object written to the key while
// erase deletes its versions survives that pass; erase's last listing
// sees it, so the key is reported not done and erase_done stays unset. A
// re-run finishes.
func TestEraseNotDoneWhenAPutRacesIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key := h.key("race.jpg")
	put := func() {
		if _, err := h.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(key), Body: bytes.NewReader([]byte("x"))}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	put()
	var once sync.Once
	proxy := faultyS3(t, h.st.AWSShimEndpoint(t), func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
		if r.Method != http.MethodDelete || r.URL.Query().Get("versionId") == "" {
			return false
		}
		forward.ServeHTTP(w, r)
		once.Do(put) // the racing PUT, once the version is gone
		return true
	})
	r := h.eraser(proxy).Erase(context.Background(), key)
	t.Logf("erase with a racing PUT: %+v", r)
	if r.Done() || r.Left != 1 {
		t.Errorf("erase with a racing PUT: done %v, left %d; want not done, 1 left", r.Done(), r.Left)
	}
	if e := h.ledgerItem("race.jpg").Erasure; e == nil || !e.Done.IsZero() {
		t.Errorf("erasure %+v; want the mark without erase_done", e)
	}
	r = h.eraser(h.st.AWSShimEndpoint(t)).Erase(context.Background(), key)
	if !r.Done() || r.Versions != 1 {
		t.Errorf("re-run: %+v; want done, 1 version removed", r)
	}
	if e := h.ledgerItem("race.jpg").Erasure; e == nil || e.Done.IsZero() {
		t.Errorf("after the re-run: erasure %+v; want erase_done set", e)
	}
}

// TestEraseWithoutS3sDateUsesItsClock: when S3's answer has no Date, erase
// stamps erased_at by this machine's clock, and still erases.
func TestEraseWithoutS3sDateUsesItsClock(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key := h.key("nodate.jpg")
	if _, err := h.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(key), Body: bytes.NewReader([]byte("x"))}); err != nil {
		t.Fatal(err)
	}
	proxy := faultyS3(t, h.st.AWSShimEndpoint(t), func(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
		if r.Method != http.MethodGet || r.URL.Query().Get("max-keys") != "1" {
			return false
		}
		rec := httptest.NewRecorder()
		forward.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header()["Date"] = nil // net/http then sends none
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		return true
	})
	e := h.eraser(proxy)
	clock := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	agent.SetEraserClock(e, func() time.Time { return clock })
	if r := e.Erase(context.Background(), key); !r.Done() || r.Versions != 1 {
		t.Errorf("erase without S3's Date: %+v; want done, 1 version removed", r)
	}
	if at := h.ledgerItem("nodate.jpg").Erasure; at == nil || !at.At.Equal(clock) {
		t.Errorf("erasure %+v; want erased_at %s, this machine's clock", at, clock)
	}
}

// TestEraseManyKeysAtOnce: erase with --parallel 4 erases every key of
// twelve (each with versions of its own) and prints their reports in the
// order the names were given.
func TestEraseManyKeysAtOnce(t *testing.T) {
	t.Parallel()
	w := newEraseWorld(t)
	var names, want []string
	for i := range 12 {
		rel := fmt.Sprintf("many/%02d.jpg", i)
		for v := range 2 {
			if _, err := w.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(w.st.Bucket), Key: aws.String(w.harness.key(rel)),
				Body: bytes.NewReader(randomBytes(100+v, byte(i)))}); err != nil {
				t.Fatal(err)
			}
		}
		names = append(names, "/static/"+rel)
		want = append(want, "erased "+w.harness.key(rel)+": removed 2 versions, 0 delete markers, 0 uploads")
	}
	out, _, code := w.eraseArgs(append([]string{"--parallel", "4"}, names...))
	if code != 0 {
		t.Errorf("erase of 12 keys, 4 at once: exit %d; want 0", code)
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); !slices.Equal(got, want) {
		t.Errorf("erase of 12 keys, 4 at once, printed:\n%s\nwant, in the order given:\n%s", out, strings.Join(want, "\n"))
	}
	left, err := w.s3.ListObjectVersions(context.Background(), &s3.ListObjectVersionsInput{Bucket: aws.String(w.st.Bucket), Prefix: aws.String(w.harness.key("many/"))})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(left.Versions) + len(left.DeleteMarkers); n != 0 {
		t.Errorf("after erase of the 12 keys: %d versions or delete markers left under many/", n)
	}
}

package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// harness is one agent's world on the real local stack: its own watch and
// archive folders and its own key prefix in the shared bucket and table.
type harness struct {
	t       *testing.T
	st      *stacktest.Stack
	cfg     agent.Config
	s3      *s3.Client // direct to the stack, for assertions
	db      *dynamodb.Client
	agentS3 *s3.Client // what the agent uses (a proxy in fault tests)
	agentDB *dynamodb.Client
	logs    *stacktest.SyncBuffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	st := stacktest.Require(t)
	dir := t.TempDir()
	h := &harness{t: t, st: st, s3: st.S3(t), db: st.DynamoDB(t), logs: &stacktest.SyncBuffer{}}
	// The agent runs with only what template.yaml's AgentPolicy grants, and
	// through the AWS shim, which answers a HEAD of a missing key with 403
	// as AWS does for a caller without s3:ListBucket. The harness's own
	// clients (s3, db) are the stack's root, for setting up and checking.
	h.agentS3, h.agentDB = h.agentS3At(st.AWSShimEndpoint(t)), h.db
	h.cfg = agent.Config{
		Watch:   filepath.Join(dir, "static"),
		Archive: filepath.Join(dir, "archive"),
		Bucket:  st.Bucket,
		Table:   st.Table,
		Mapping: offload.Mapping{URLPrefix: "/static/", KeyPrefix: stacktest.Prefix(t)},
		Host:    "test-host",
		// Short enough for tests; the rules are the same as with 2 s.
		Quiet:    300 * time.Millisecond,
		Rescan:   time.Second,
		PartSize: 5 << 20,
		Logger:   slog.New(slog.NewTextHandler(io.MultiWriter(h.logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, d := range []string{h.cfg.Watch, h.cfg.Archive} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// agentS3At is an S3 client with the agent's credentials that connects to
// endpoint (a proxy, the shim, or MinIO itself).
func (h *harness) agentS3At(endpoint string) *s3.Client {
	h.t.Helper()
	return h.st.S3For(h.t, stacktest.Agent, endpoint)
}

// requireAWSAnswers checks that the agent sees S3 the way AWS answers it
// under AgentPolicy: a HEAD of a missing key is 403, not MinIO's 404. A
// test that calls it proves its path works where a missing key cannot be
// told from a forbidden one.
func (h *harness) requireAWSAnswers() {
	h.t.Helper()
	_, err := h.agentS3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(h.key("never-written.jpg"))})
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != 403 {
		h.t.Fatalf("the agent's HEAD of a missing key: %v; want 403, as AWS answers without s3:ListBucket (is the AWS shim in front?)", err)
	}
}

// commandEnv is the environment of an offload-agent command the test runs
// as component (stacktest.Agent or stacktest.Audit): the stack's, with that
// component's credentials, S3 through the AWS shim, then extra.
func (h *harness) commandEnv(component string, extra ...string) []string {
	h.t.Helper()
	env := append(os.Environ(), h.st.Env(h.t, component)...)
	env = append(env, "AWS_ENDPOINT_URL_S3="+h.st.AWSShimEndpoint(h.t))
	return append(env, extra...)
}

func (h *harness) newAgent(cfg agent.Config) *agent.Agent {
	h.t.Helper()
	a, err := agent.New(cfg, h.agentS3, h.agentDB)
	if err != nil {
		h.t.Fatalf("agent.New: %v", err)
	}
	h.t.Cleanup(func() { a.Close() })
	return a
}

// once runs Once with a deadline and returns its error.
func (h *harness) once() error {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return h.newAgent(h.cfg).Once(ctx)
}

// runDaemon starts Run in the background; the returned stop cancels it and
// waits for it to return.
func (h *harness) runDaemon(cfg agent.Config) (a *agent.Agent, stop func() error) {
	h.t.Helper()
	a = h.newAgent(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(2 * time.Minute):
				err = errors.New("Run did not return within 2 minutes of cancel")
			}
		})
		return err
	}
	h.t.Cleanup(func() { _ = stop() })
	return a, stop
}

// write puts a file into the watch folder the way a back-end does: into a
// temporary name (ignored by the agent), then renamed into place.
func (h *harness) write(rel string, data []byte) {
	h.t.Helper()
	dst := filepath.Join(h.cfg.Watch, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		h.t.Fatal(err)
	}
	tmp := dst + ".part"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) key(rel string) string { return h.cfg.Mapping.KeyPrefix + rel }

// assertOffloaded checks the whole promise for one file: S3 holds exactly
// the bytes with the full-object checksum, the ledger records them, and the
// local copy moved to the archive.
func (h *harness) assertOffloaded(rel string, data []byte) {
	h.t.Helper()
	ctx := context.Background()
	key := h.key(rel)
	want := checksum(data)
	head, err := h.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(key), ChecksumMode: s3types.ChecksumModeEnabled})
	if err != nil {
		h.t.Fatalf("%s: HeadObject: %v", rel, err)
	}
	if got := aws.ToString(head.ChecksumCRC64NVME); got != want {
		h.t.Errorf("%s: S3 crc64nvme = %q; want %q", rel, got, want)
	}
	if head.ChecksumType == s3types.ChecksumTypeComposite {
		h.t.Errorf("%s: S3 checksum type is COMPOSITE; want a full-object checksum", rel)
	}
	got, err := h.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(key)})
	if err != nil {
		h.t.Fatalf("%s: GetObject: %v", rel, err)
	}
	body, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if !bytes.Equal(body, data) {
		h.t.Errorf("%s: S3 holds %d bytes that differ from the %d written", rel, len(body), len(data))
	}
	rec := h.ledgerItem(rel)
	wantRec := offload.Record{Key: key, Size: int64(len(data)), CRC64NVME: want, Host: "test-host", Path: rel}
	if !rec.SameObject(wantRec) || rec.Host != wantRec.Host || rec.Path != rel || rec.ETag == "" || rec.ContentType == "" || rec.UploadedAt.IsZero() {
		h.t.Errorf("%s: ledger item = %+v; want %+v with ETag, content type and time", rel, rec, wantRec)
	}
	archived, err := os.ReadFile(filepath.Join(h.cfg.Archive, filepath.FromSlash(rel)))
	if err != nil || !bytes.Equal(archived, data) {
		h.t.Errorf("%s: archived copy: %d bytes, %v; want the %d bytes written", rel, len(archived), err, len(data))
	}
	if _, err := os.Lstat(filepath.Join(h.cfg.Watch, filepath.FromSlash(rel))); !errors.Is(err, os.ErrNotExist) {
		h.t.Errorf("%s: still in the watch folder (err %v)", rel, err)
	}
}

// ledgerItem reads the ledger item for rel, failing the test without one.
func (h *harness) ledgerItem(rel string) offload.Record {
	h.t.Helper()
	out, err := h.db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(h.st.Table),
		Key:            map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: h.key(rel)}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil || out.Item == nil {
		h.t.Fatalf("%s: ledger GetItem: item %v, err %v", rel, out != nil && out.Item != nil, err)
	}
	rec, err := offload.RecordFromItem(out.Item)
	if err != nil {
		h.t.Fatal(err)
	}
	return rec
}

// objectExists reports whether the bucket has the key.
func (h *harness) objectExists(rel string) bool {
	_, err := h.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(h.st.Bucket), Key: aws.String(h.key(rel))})
	return err == nil
}

// multipartUploads lists the unfinished multipart uploads under the test's prefix.
func (h *harness) multipartUploads() []string {
	h.t.Helper()
	// MinIO lists uploads for a prefix only when it is a whole key, so
	// list them all and filter.
	var keys []string
	p := s3.NewListMultipartUploadsPaginator(h.s3, &s3.ListMultipartUploadsInput{Bucket: aws.String(h.st.Bucket)})
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			h.t.Fatalf("ListMultipartUploads: %v", err)
		}
		for _, u := range out.Uploads {
			if k := aws.ToString(u.Key); strings.HasPrefix(k, h.cfg.Mapping.KeyPrefix) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// waitFor polls cond until it holds or the deadline passes.
func (h *harness) waitFor(what string, d time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// archived reports whether rel is in the archive folder.
func (h *harness) archived(rel string) bool {
	_, err := os.Stat(filepath.Join(h.cfg.Archive, filepath.FromSlash(rel)))
	return err == nil
}

func checksum(data []byte) string {
	c := offload.NewCRC64NVME()
	c.Write(data)
	return offload.EncodeChecksum(c.Sum64())
}

// randomBytes returns n reproducible bytes; another seed gives other bytes.
func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{seed, byte(n), byte(n >> 8), byte(n >> 16)})
	r.Read(b)
	return b
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

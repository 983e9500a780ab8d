package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// hostName is a host name of this harness alone: heartbeat items are one
// per host in the table the tests share.
func (h *harness) hostName(name string) string {
	return strings.ReplaceAll(strings.TrimSuffix(h.cfg.Mapping.KeyPrefix, "/"), "/", "-") + "-" + name
}

// writeHeartbeat writes host's heartbeat item as an agent does each poll, with
// the stack's root client, and deletes it when the test ends.
func (h *harness) writeHeartbeat(keyPrefix, host string, seenAt time.Time) {
	h.t.Helper()
	ctx := context.Background()
	if _, err := h.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(h.st.Table),
		Item: offload.Heartbeat{Host: host, KeyPrefix: keyPrefix, SeenAt: seenAt}.Item()}); err != nil {
		h.t.Fatalf("heartbeat of %s: %v", host, err)
	}
	h.t.Cleanup(func() {
		h.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(h.st.Table),
			Key: map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: offload.HeartbeatKey(host)}}})
	})
}

// eraseDone sets EraseDoneAttr on key's tombstone, as erase does once S3
// holds nothing of the key.
func (h *harness) eraseDone(key string) {
	h.t.Helper()
	if _, err := h.db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName:                 aws.String(h.st.Table),
		Key:                       map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: key}},
		UpdateExpression:          aws.String("SET #done = :now"),
		ConditionExpression:       aws.String("attribute_exists(#at)"),
		ExpressionAttributeNames:  map[string]string{"#done": offload.EraseDoneAttr, "#at": offload.ErasedAtAttr},
		ExpressionAttributeValues: map[string]dbtypes.AttributeValue{":now": &dbtypes.AttributeValueMemberS{Value: time.Now().UTC().Format(time.RFC3339Nano)}},
	}); err != nil {
		h.t.Fatalf("erase_done on %s: %v", key, err)
	}
}

// ack adds hosts to key's acked_by, as each host's agent does once its
// copies are gone.
func (h *harness) ack(key string, hosts ...string) {
	h.t.Helper()
	if _, err := h.db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName:                 aws.String(h.st.Table),
		Key:                       map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: key}},
		UpdateExpression:          aws.String("ADD #acked :hosts"),
		ConditionExpression:       aws.String("attribute_exists(#at)"),
		ExpressionAttributeNames:  map[string]string{"#acked": offload.AckedByAttr, "#at": offload.ErasedAtAttr},
		ExpressionAttributeValues: map[string]dbtypes.AttributeValue{":hosts": &dbtypes.AttributeValueMemberSS{Value: hosts}},
	}); err != nil {
		h.t.Fatalf("ack %s by %q: %v", key, hosts, err)
	}
}

// auditAsItself runs the audit with AuditPolicy's credentials and returns
// what it found.
func (h *harness) auditAsItself(opts agent.AuditOptions) ([]agent.Discrepancy, agent.AuditSummary) {
	h.t.Helper()
	h.agentS3 = h.st.S3For(h.t, stacktest.Audit, h.st.AWSShimEndpoint(h.t))
	var got []agent.Discrepancy
	sum, err := h.newAgent(h.cfg).Audit(context.Background(), opts, func(d agent.Discrepancy) { got = append(got, d) })
	if err != nil {
		h.t.Fatalf("Audit: %v", err)
	}
	slices.SortFunc(got, func(a, b agent.Discrepancy) int { return strings.Compare(a.Kind+a.Key, b.Kind+b.Key) })
	return got, sum
}

// TestAuditReportsErasures: the audit judges each erasure of its key
// prefix by its tombstone and the heartbeats of the prefix's hosts.
// Complete is erase_done set and every known host acknowledged; otherwise
// it names what is missing: S3's part (erasure-incomplete), the hosts not
// acknowledged, live or down since when (erasure-pending), or an object
// that came back under the key (erased-object-present). Heartbeats of
// other key prefixes do not count, and an erasure younger than --grace is
// not judged.
func TestAuditReportsErasures(t *testing.T) {
	t.Parallel()
	longAgo := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)

	t.Run("complete", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		p := h.cfg.Mapping.KeyPrefix
		a, b := h.hostName("a"), h.hostName("b")
		h.writeHeartbeat(p, a, time.Now())
		h.writeHeartbeat(p, b, time.Now())
		// (f) A live host of another key prefix never acknowledges ours.
		h.writeHeartbeat(p+"other/", h.hostName("other"), time.Now())
		key := h.key("gone.jpg")
		h.markErased(p, key, longAgo)
		h.eraseDone(key)
		h.ack(key, a, b)

		got, sum := h.auditAsItself(agent.AuditOptions{})
		if len(got) != 0 {
			t.Errorf("audit found %+v; want nothing", got)
		}
		if sum.Erasures != 1 || sum.ErasuresComplete != 1 || sum.ErasuresPending != 0 {
			t.Errorf("summary %+v; want 1 erasure, complete", sum)
		}
	})

	t.Run("hosts not acknowledged", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		p := h.cfg.Mapping.KeyPrefix
		live, down, acked := h.hostName("live"), h.hostName("down"), h.hostName("acked")
		h.writeHeartbeat(p, live, time.Now())
		h.writeHeartbeat(p, down, longAgo)
		h.writeHeartbeat(p, acked, time.Now())
		key := h.key("gone.jpg")
		h.markErased(p, key, longAgo)
		h.eraseDone(key)
		h.ack(key, acked)

		got, sum := h.auditAsItself(agent.AuditOptions{})
		if len(got) != 1 || got[0].Kind != agent.ErasurePending || got[0].Key != key {
			t.Fatalf("audit found %+v; want one %s of %s", got, agent.ErasurePending, key)
		}
		wantHosts := []agent.ErasureHost{{Host: down, SeenAt: longAgo}, {Host: live, Live: true}}
		gotHosts := got[0].Hosts
		if len(gotHosts) != 2 || gotHosts[0].Host != down || gotHosts[0].Live || !gotHosts[0].SeenAt.Equal(longAgo) ||
			gotHosts[1].Host != live || !gotHosts[1].Live {
			t.Errorf("hosts %+v; want %+v", gotHosts, wantHosts)
		}
		for _, want := range []string{live + " (live)", down + " (down since " + longAgo.Format(time.RFC3339) + ")"} {
			if !strings.Contains(got[0].Detail, want) {
				t.Errorf("detail %q; want it to say %q", got[0].Detail, want)
			}
		}
		if strings.Contains(got[0].Detail, acked) {
			t.Errorf("detail %q names %s, which acknowledged", got[0].Detail, acked)
		}
		if sum.Erasures != 1 || sum.ErasuresComplete != 0 || sum.ErasuresPending != 1 {
			t.Errorf("summary %+v; want 1 erasure, pending", sum)
		}
		// A longer --host-timeout: the down host counts as live.
		got, _ = h.auditAsItself(agent.AuditOptions{HostTimeout: 24 * time.Hour})
		if len(got) != 1 || !strings.Contains(got[0].Detail, down+" (live)") {
			t.Errorf("with a day's host timeout: %+v; want %s live", got, down)
		}
	})

	t.Run("S3 not done", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		key := h.key("half.jpg")
		h.markErased(h.cfg.Mapping.KeyPrefix, key, longAgo)

		got, sum := h.auditAsItself(agent.AuditOptions{})
		if len(got) != 1 || got[0].Kind != agent.ErasureIncomplete || got[0].Key != key || !strings.Contains(got[0].Detail, "offload-agent erase --why REASON "+key) {
			t.Errorf("audit found %+v; want one %s of %s that says to run offload-agent erase --why REASON %s", got, agent.ErasureIncomplete, key, key)
		}
		if sum.ErasuresComplete != 0 || sum.ErasuresPending != 1 {
			t.Errorf("summary %+v; want 1 erasure pending", sum)
		}
	})

	t.Run("object came back", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		key := h.key("back.jpg")
		h.markErased(h.cfg.Mapping.KeyPrefix, key, longAgo)
		h.eraseDone(key)
		host := h.hostName("a")
		h.writeHeartbeat(h.cfg.Mapping.KeyPrefix, host, time.Now())
		h.ack(key, host)
		if _, err := h.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(key), Body: bytes.NewReader([]byte("again"))}); err != nil {
			t.Fatal(err)
		}

		got, sum := h.auditAsItself(agent.AuditOptions{})
		if len(got) != 1 || got[0].Kind != agent.ErasedObjectPresent || got[0].Key != key || !strings.Contains(got[0].Detail, "offload-agent erase --why REASON "+key) {
			t.Errorf("audit found %+v; want one %s of %s that says to run offload-agent erase --why REASON %s", got, agent.ErasedObjectPresent, key, key)
		}
		if sum.ErasuresComplete != 0 || sum.ErasuresPending != 1 {
			t.Errorf("summary %+v; want 1 erasure pending", sum)
		}
	})

	t.Run("no host known", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		key := h.key("nobody.jpg")
		h.markErased(h.cfg.Mapping.KeyPrefix, key, longAgo)
		h.eraseDone(key)
		got, sum := h.auditAsItself(agent.AuditOptions{})
		if len(got) != 1 || got[0].Kind != agent.ErasurePending || !strings.Contains(got[0].Detail, "no host of this key prefix") {
			t.Errorf("audit found %+v; want one %s saying no host is known", got, agent.ErasurePending)
		}
		if sum.ErasuresComplete != 0 || sum.ErasuresPending != 1 {
			t.Errorf("summary %+v; want 1 erasure pending", sum)
		}
	})

	t.Run("young", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		key := h.key("now.jpg")
		h.markErased(h.cfg.Mapping.KeyPrefix, key, time.Now())
		// erase may still be deleting: its object is still there.
		if _, err := h.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(key), Body: bytes.NewReader([]byte("still"))}); err != nil {
			t.Fatal(err)
		}
		got, sum := h.auditAsItself(agent.AuditOptions{Grace: time.Hour})
		if len(got) != 0 {
			t.Errorf("with an hour's grace: audit found %+v; want nothing", got)
		}
		if sum.Erasures != 1 || sum.ErasuresComplete != 0 || sum.ErasuresPending != 0 || sum.Pending != 2 {
			t.Errorf("summary %+v; want 1 erasure, not judged: pending 2 (it and its object)", sum)
		}
		got, _ = h.auditAsItself(agent.AuditOptions{})
		var kinds []string
		for _, d := range got {
			kinds = append(kinds, d.Kind)
		}
		if want := []string{agent.ErasedObjectPresent, agent.ErasureIncomplete}; !slices.Equal(kinds, want) {
			t.Errorf("without a grace: audit found %q; want %q", kinds, want)
		}
	})
}

// TestAuditCommandErasures: the command exits 1 while an erasure is not
// complete, names the host in its line and in --json's host list, counts
// erasures in the summary, and exits 0 once the host acknowledged.
// --host-timeout says when a silent host counts as down.
func TestAuditCommandErasures(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bin := buildAgent(t)
	p := h.cfg.Mapping.KeyPrefix
	host := h.hostName("web")
	seen := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	h.writeHeartbeat(p, host, seen)
	key := h.key("gone.jpg")
	h.markErased(p, key, time.Now().Add(-time.Hour))
	h.eraseDone(key)

	audit := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"audit", "--watch", h.cfg.Watch, "--archive", h.cfg.Archive,
			"--key-prefix", p, "--grace", "0s"}, args...)...)
		cmd.Env = h.commandEnv(stacktest.Audit)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, io.MultiWriter(&errOut, testWriter{t})
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), code
	}
	out, _, code := audit()
	t.Logf("audit output:\n%s", out)
	for _, want := range []string{agent.ErasurePending + " ", host + " (down since " + seen.Format(time.RFC3339) + ")",
		"1 erasures: 0 complete, 1 pending", "1 discrepancies: " + agent.ErasurePending + " 1"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("audit: exit %d, output:\n%s\nwant 1 and %q", code, out, want)
		}
	}
	if out, _, code := audit("--host-timeout", "1h"); code != 1 || !strings.Contains(out, host+" (live)") {
		t.Errorf("audit --host-timeout 1h: exit %d, output:\n%s\nwant 1 and %s live", code, out, host)
	}

	out, _, code = audit("--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var d agent.Discrepancy
	var final struct {
		Summary agent.AuditSummary
		Error   string
	}
	if code != 1 || len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &d) != nil || json.Unmarshal([]byte(lines[1]), &final) != nil ||
		d.Kind != agent.ErasurePending || d.Key != key || len(d.Hosts) != 1 || d.Hosts[0].Host != host || d.Hosts[0].Live || !d.Hosts[0].SeenAt.Equal(seen) ||
		final.Summary.ErasuresPending != 1 || final.Summary.Discrepancies[agent.ErasurePending] != 1 {
		t.Errorf("audit --json: exit %d, output:\n%s", code, out)
	}
	if !strings.Contains(lines[0], `"hosts":[{"host":"`+host+`"`) {
		t.Errorf("audit --json line %s; want a \"hosts\" list", lines[0])
	}

	if _, errOut, code := audit("--host-timeout", "soon"); code != 2 || !strings.Contains(errOut, "--host-timeout") {
		t.Errorf("audit --host-timeout soon: exit %d, stderr %q; want 2 naming --host-timeout", code, errOut)
	}

	h.ack(key, host)
	if out, _, code := audit(); code != 0 || !strings.Contains(out, "no discrepancies") || !strings.Contains(out, "1 erasures: 1 complete, 0 pending") {
		t.Errorf("audit after the ack: exit %d, output:\n%s\nwant 0, the erasure complete", code, out)
	}
}

// TestAuditFindsErasedCopies: an erasure that S3 finished and every known
// host acknowledged is still not clean while a copy of the original is
// left in a hot cache (the web server serves it) or an archive: each is
// erased-copy-present, not "complete" and not archived-not-in-s3 (which
// reads as an original never proven). Before, the cached copy passed the
// cache check (its size and checksum are the tombstone's) and the
// archived one was archived-not-in-s3.
func TestAuditFindsErasedCopies(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	data := randomBytes(3000, 7)
	h.write("a.jpg", data)
	h.write("b.jpg", randomBytes(3001, 8))
	if err := h.once(); err != nil {
		t.Fatalf("Once: %v", err)
	}
	cacheDir := t.TempDir()
	cached := filepath.Join(cacheDir, "static", "a.jpg")
	os.MkdirAll(filepath.Dir(cached), 0o755)
	if err := os.WriteFile(cached, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h.eraseOffloaded("a.jpg") // the archived copy goes, the cached one stays
	h.markErased(h.cfg.Mapping.KeyPrefix, h.key("b.jpg"), time.Now())
	h.deleteVersions(h.key("b.jpg")) // the archived copy of b.jpg stays
	host := h.hostName("web")
	h.writeHeartbeat(h.cfg.Mapping.KeyPrefix, host, time.Now())
	for _, rel := range []string{"a.jpg", "b.jpg"} {
		h.eraseDone(h.key(rel))
		h.ack(h.key(rel), host)
	}

	h.agentS3 = h.st.S3For(t, stacktest.Audit, h.st.AWSShimEndpoint(t))
	var got []string
	if _, err := h.newAgent(h.cfg).Audit(context.Background(), agent.AuditOptions{CacheDir: cacheDir}, func(d agent.Discrepancy) { got = append(got, d.Kind+" "+d.Path) }); err != nil {
		t.Errorf("Audit: %v", err)
	}
	slices.Sort(got)
	want := []string{agent.ErasedCopyPresent + " a.jpg", agent.ErasedCopyPresent + " b.jpg"}
	if !slices.Equal(got, want) {
		t.Errorf("audit found %q; want %q", got, want)
	}
}

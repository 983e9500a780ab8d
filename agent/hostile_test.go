package agent_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/agent"
)

// TestHostileNames: every odd name a back-end (or an attacker with upload
// rights) can put in the watch folder is either offloaded under exactly its
// own key or refused with a log line that names it; it is never lost,
// never crashes the agent, and never lands under another name's key.
func TestHostileNames(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	segment := strings.Repeat("d", 250)
	type outcome int
	const (
		offloaded outcome = iota
		refused           // the naming contract says no: stays local, logged
		ignored           // a temp/hidden name by the ignore rules: stays local
		skipped           // not a regular file: stays as it is, logged
	)
	cases := []struct {
		rel  string
		want outcome
	}{
		{strings.Repeat("x", 251) + ".jpg", offloaded},                                             // 255 bytes, NAME_MAX
		{strings.Join([]string{segment, segment, segment, segment, "too-deep.jpg"}, "/"), refused}, // key over 1024 bytes
		{"new\nline.jpg", refused},
		{"carriage\rreturn.jpg", refused},
		{"tab\there.jpg", refused},
		{"del\x7f.jpg", refused},
		{"c1-control\u0085.jpg", refused},
		{"non-character\uffff.jpg", refused},
		{"invalid-utf8-\xff\xfe.jpg", refused},
		{"latin1-caf\xe9.jpg", refused},
		{"back\\slash.jpg", refused},
		{"-rf.jpg", offloaded},
		{"--help.jpg", offloaded},
		{"-", offloaded},
		{"\u2025.jpg", offloaded},           // two-dot leader, a ".." lookalike
		{"\uff0e\uff0e", offloaded},         // fullwidth full stops
		{"%2e%2e", offloaded},               // literally, not a traversal
		{"..%2f..%2fetc%2fpasswd", ignored}, // a dot name: hidden
		{"a/%2e%2e/b.jpg", offloaded},
		{"caf\u00e9.jpg", offloaded},  // NFC
		{"cafe\u0301.jpg", offloaded}, // NFD: same text, another name
		{" leading space.jpg", offloaded},
		{"trailing space.jpg ", offloaded},
		{"100%.jpg", offloaded},
		{"a?b#c&d=e+f;g.jpg", offloaded},
		{"[glob]*?.jpg", offloaded},
		{"\u202egpj.exe", offloaded}, // right-to-left override: shown reversed, stored as is
		{"\ufeffbom.jpg", offloaded},
		{"\U0001F4F7 photo.jpg", offloaded},
		{"quote\"'`$(id).jpg", offloaded},
		{"<script>.jpg", offloaded},
		{".hidden.jpg", ignored},
		{"upload.jpg.tmp", ignored},
		{"..jpg", ignored},
	}
	data := map[string][]byte{}
	for i, c := range cases {
		data[c.rel] = randomBytes(1<<10+i, byte(i))
		writeRaw(t, h.cfg.Watch, c.rel, data[c.rel])
	}
	// Not regular files: a symlink out of the folder and a FIFO, which
	// must not block the agent on open.
	secret := filepath.Join(t.TempDir(), "secret.jpg")
	os.WriteFile(secret, []byte("not for S3"), 0o644)
	if err := os.Symlink(secret, filepath.Join(h.cfg.Watch, "link.jpg")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(h.cfg.Watch, "fifo.jpg"), 0o644); err != nil {
		t.Fatal(err)
	}

	err := h.once()
	if !errors.Is(err, agent.ErrIncomplete) {
		t.Errorf("Once = %v; want ErrIncomplete for the refused names", err)
	}

	// Each refusal line names its file in its own file attribute; the
	// names it refuses are exactly the ones the contract refuses.
	refusedBy := refusals(t, h.logs.String())
	wantKeys := map[string]bool{}
	for _, c := range cases {
		local := filepath.Join(h.cfg.Watch, filepath.FromSlash(c.rel))
		switch c.want {
		case offloaded:
			h.assertOffloaded(c.rel, data[c.rel])
			wantKeys[h.key(c.rel)] = true
			// The URL the site serves maps back to the same key.
			u, err := h.cfg.Mapping.URLForKey(h.key(c.rel))
			if back, err2 := h.cfg.Mapping.KeyForURL(u); err != nil || err2 != nil || back != h.key(c.rel) {
				t.Errorf("%q: URL %q maps back to key %q (%v, %v)", c.rel, u, back, err, err2)
			}
		default:
			if got, err := os.ReadFile(local); err != nil || string(got) != string(data[c.rel]) {
				t.Errorf("%q (not to be offloaded): local file %d bytes, %v; want it untouched", c.rel, len(got), err)
			}
		}
		if got := refusedBy[c.rel]; (got > 0) != (c.want == refused) {
			t.Errorf("%q: %d %q lines with file=%s; want one or more if and only if it is refused", c.rel, got, refusedMsg, strconv.Quote(c.rel))
		}
		delete(refusedBy, c.rel)
	}
	for rel, n := range refusedBy {
		t.Errorf("%d %q lines with file=%s, a name the test did not write", n, refusedMsg, strconv.Quote(rel))
	}
	if fi, err := os.Lstat(filepath.Join(h.cfg.Watch, "link.jpg")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink: %v, %v; want it left as it is", fi, err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "not for S3" {
		t.Errorf("the symlink's target changed")
	}
	skippedBy := logFiles(t, h.logs.String(), "skipped: only regular files are offloaded")
	for _, name := range []string{"link.jpg", "fifo.jpg"} {
		if skippedBy[name] == 0 {
			t.Errorf("%s: no \"skipped\" log line with file=%s", name, name)
		}
	}

	// Nothing else in the bucket under the prefix: no name landed under
	// another key, and the symlink's target was not uploaded.
	out, err := h.s3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(h.st.Bucket), Prefix: aws.String(h.cfg.Mapping.KeyPrefix)})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out.Contents {
		if !wantKeys[aws.ToString(o.Key)] {
			t.Errorf("unexpected object %q", aws.ToString(o.Key))
		}
		delete(wantKeys, aws.ToString(o.Key))
	}
	for k := range wantKeys {
		t.Errorf("missing object %q", k)
	}
}

// writeRaw writes data under rel by way of a hidden temp name (the agent
// ignores it), so that names at the length limit get no suffix.
func writeRaw(t *testing.T, watch, rel string, data []byte) {
	t.Helper()
	dst := filepath.Join(watch, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(watch, ".writing")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatalf("%q: %v", rel, err)
	}
}

// refusedMsg is the message the agent logs for a name the naming contract
// refuses.
const refusedMsg = "refused: never uploaded"

// refusals counts the refusal lines of a text log by the file each names.
func refusals(t *testing.T, log string) map[string]int {
	t.Helper()
	return logFiles(t, log, refusedMsg)
}

// logFiles counts the lines of a text log (slog's text handler, one record
// a line) with message msg, by the value of each one's file attribute,
// unquoted. A line with that message and no file attribute fails the test.
func logFiles(t *testing.T, log, msg string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, " msg="+strconv.Quote(msg)+" ") {
			continue
		}
		file, ok := logAttr(line, "file")
		if !ok {
			t.Errorf("a %q line names no file: %s", msg, line)
			continue
		}
		out[file]++
	}
	return out
}

// logAttr returns the value of one attribute of a text log line, as slog's
// text handler writes it: bare up to the next space, or quoted (Go syntax)
// when it must be.
func logAttr(line, key string) (string, bool) {
	_, v, ok := strings.Cut(line, " "+key+"=")
	if !ok {
		return "", false
	}
	if strings.HasPrefix(v, `"`) {
		q, err := strconv.QuotedPrefix(v)
		if err != nil {
			return "", false
		}
		u, err := strconv.Unquote(q)
		return u, err == nil
	}
	v, _, _ = strings.Cut(v, " ")
	return v, true
}

// TestSymlinkedClaimFolderLosesNothing: someone with write access to the
// watch folder replaces .offload-claim with a symlink to the archive
// folder. Followed, the claim renamed the file into the archive, the
// archive step found "the same file" there and deleted it, and the log said
// "offloaded": the file was in neither folder. The agent must refuse to
// act through the symlink, say so, count the failure, and keep the file
// in the watch folder (it is in S3 and the ledger, and served meanwhile).
func TestSymlinkedClaimFolderLosesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const rel = "2026/photo.jpg"
	data := randomBytes(3000, 11)
	if err := os.Symlink(h.cfg.Archive, filepath.Join(h.cfg.Watch, ".offload-claim")); err != nil {
		t.Fatal(err)
	}
	h.write(rel, data)
	a := h.newAgent(h.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.Once(ctx); !errors.Is(err, agent.ErrIncomplete) {
		t.Errorf("Once = %v; want ErrIncomplete: the file could not be archived", err)
	}
	local := filepath.Join(h.cfg.Watch, filepath.FromSlash(rel))
	if got, err := os.ReadFile(local); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the file in the watch folder: %d bytes, %v; want the %d bytes written, left in place", len(got), err, len(data))
	}
	if _, err := os.Lstat(filepath.Join(h.cfg.Archive, filepath.FromSlash(rel))); err == nil {
		t.Error("the file is in the archive too")
	}
	if n := a.Stats().Uploaded.Load(); n != 0 {
		t.Errorf("%d files counted offloaded; want 0", n)
	}
	if n := a.Stats().Failures.Load(); n == 0 {
		t.Error("no failure counted")
	}
	if !strings.Contains(h.logs.String(), ".offload-claim: a symlink") {
		t.Errorf("no log line names .offload-claim as a symlink:\n%s", h.logs.String())
	}
	if rec := h.ledgerItem(rel); rec.CRC64NVME != checksum(data) {
		t.Errorf("ledger: %s; want %s, the file is in S3", rec.CRC64NVME, checksum(data))
	}
}

package hotcache_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent/hotcache"
)

// markErased turns rel's ledger item into a tombstone as "offload-agent
// erase" marks it (a key never recorded gets one too).
func (w *world) markErased(rel string) {
	w.t.Helper()
	_, err := w.db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName:                aws.String(w.cfg.Table),
		Key:                      map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: w.cfg.Mapping.KeyPrefix + rel}},
		UpdateExpression:         aws.String("SET #at = :at, #in = :in"),
		ExpressionAttributeNames: map[string]string{"#at": offload.ErasedAtAttr, "#in": offload.ErasedInAttr},
		ExpressionAttributeValues: map[string]dbtypes.AttributeValue{
			":at": &dbtypes.AttributeValueMemberS{Value: offload.FormatErasedAt(time.Now())},
			":in": &dbtypes.AttributeValueMemberS{Value: offload.ErasedPartition(w.cfg.Mapping.KeyPrefix)},
		},
	})
	if err != nil {
		w.t.Fatalf("mark %s erased: %v", rel, err)
	}
}

// TestErasedIsNotFetched: a hot path whose ledger item is a tombstone is
// not fetched, whether its object is still in S3 (the erasure has only
// marked it so far) or it was never recorded; each is looked up once,
// counted as "erased", and left alone for the window.
func TestErasedIsNotFetched(t *testing.T) {
	w := newWorld(t)
	w.offloaded("erased.jpg", randomBytes(20<<10, 70))
	w.markErased("erased.jpg")
	w.markErased("never.jpg")
	c := w.start(w.cacheS3)
	miss(c, "erased.jpg", 2)
	miss(c, "never.jpg", 2)
	w.fetchEnded("erased.jpg", "never.jpg")
	if f := c.Stats().FetchFailures; f[hotcache.FailErased] != 2 {
		t.Errorf("failures %v; want 2 %q", f, hotcache.FailErased)
	}
	for _, rel := range []string{"erased.jpg", "never.jpg"} {
		if _, err := os.Stat(w.cachedPath(rel)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: stat %v; want nothing published", rel, err)
		}
	}
	miss(c, "erased.jpg", 4)
	noFetchQueued(t, c, "4 more redirects")
	assertNoDownloads(t, w)
}

// TestForgetRemovesACachedFile: Forget removes a cached file, stops
// counting its bytes, and says so; forgetting a key not cached is a no-op.
func TestForgetRemovesACachedFile(t *testing.T) {
	w := newWorld(t)
	w.offloaded("cached.jpg", randomBytes(20<<10, 71))
	c := w.start(w.cacheS3)
	miss(c, "cached.jpg", 2)
	w.fetchEnded("cached.jpg")
	if _, err := os.Stat(w.cachedPath("cached.jpg")); err != nil {
		t.Fatalf("not fetched: %v", err)
	}
	if removed, err := c.Forget(w.cfg.Mapping.KeyPrefix + "cached.jpg"); !removed || err != nil {
		t.Errorf("Forget of a cached file = %v, %v; want true, nil", removed, err)
	}
	if _, err := os.Stat(w.cachedPath("cached.jpg")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Forget: stat %v; want the file gone", err)
	}
	if s := c.Stats(); s.Files != 0 || s.Bytes != 0 || s.EvictedErased != 1 {
		t.Errorf("after Forget: stats %+v; want an empty cache, 1 evicted as erased", s)
	}
	if removed, err := c.Forget(w.cfg.Mapping.KeyPrefix + "other.jpg"); removed || err != nil {
		t.Errorf("Forget of a key not cached = %v, %v; want false, nil", removed, err)
	}
}

// TestFetchOvertakenByErasureIsNotPublished: a fetch that read the ledger
// before the mark and downloaded the bytes is held between the download
// and the rename; Forget runs (as the host's erasure poller does); once
// released, the fetch never publishes the file, and leaves no download.
func TestFetchOvertakenByErasureIsNotPublished(t *testing.T) {
	w := newWorld(t)
	w.offloaded("race.jpg", randomBytes(20<<10, 72))
	key := w.cfg.Mapping.KeyPrefix + "race.jpg"
	reached, release := make(chan string, 1), make(chan struct{})
	c := w.start(w.cacheS3, func(c *hotcache.Cache) {
		hotcache.OnBeforePublish(c, func(k string) { reached <- k; <-release })
	})
	miss(c, "race.jpg", 2)
	select {
	case k := <-reached:
		if k != key {
			t.Fatalf("held the fetch of %q; want %q", k, key)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for the fetch to reach its rename")
	}
	if removed, err := c.Forget(key); removed || err != nil {
		t.Errorf("Forget during the fetch = %v, %v; want false, nil: nothing was cached yet", removed, err)
	}
	close(release)
	w.fetchEnded("race.jpg")
	if _, err := os.Stat(w.cachedPath("race.jpg")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Forget during its fetch: stat %v; want never published", err)
	}
	s := c.Stats()
	if s.Files != 0 || s.Bytes != 0 || s.Fetches != 0 || s.FetchFailures[hotcache.FailErased] != 1 {
		t.Errorf("stats %+v; want an empty cache, no fetch, 1 %q failure", s, hotcache.FailErased)
	}
	assertNoDownloads(t, w)
}

// TestForgetThatCannotRemoveKeepsTheEntry: when the cached file cannot be
// removed, Forget says so with an error and keeps the file indexed and
// counted; the next Forget, once the unlink works, removes it. (The unlink
// is made to fail through a hook: the tests run as root, whom a folder's
// mode does not stop.)
func TestForgetThatCannotRemoveKeepsTheEntry(t *testing.T) {
	w := newWorld(t)
	data := randomBytes(20<<10, 73)
	w.offloaded("stuck.jpg", data)
	key := w.cfg.Mapping.KeyPrefix + "stuck.jpg"
	c := w.start(w.cacheS3)
	miss(c, "stuck.jpg", 2)
	w.fetchEnded("stuck.jpg")
	if _, err := os.Stat(w.cachedPath("stuck.jpg")); err != nil {
		t.Fatalf("not fetched: %v", err)
	}

	restore := hotcache.FailRemove(c, fs.ErrPermission)
	removed, err := c.Forget(key)
	if removed || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Forget with a failing unlink = %v, %v; want false and the unlink's error", removed, err)
	}
	if _, serr := os.Stat(w.cachedPath("stuck.jpg")); serr != nil {
		t.Fatalf("the file after a failed Forget: %v; want it still there", serr)
	}
	if s := c.Stats(); s.Files != 1 || s.Bytes != int64(len(data)) || s.EvictedErased != 0 {
		t.Errorf("after a failed Forget: stats %+v; want the file still cached and counted, none evicted as erased", s)
	}

	restore()
	if removed, err := c.Forget(key); !removed || err != nil {
		t.Errorf("Forget again = %v, %v; want true, nil", removed, err)
	}
	if _, err := os.Stat(w.cachedPath("stuck.jpg")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after the second Forget: stat %v; want the file gone", err)
	}
	if s := c.Stats(); s.Files != 0 || s.Bytes != 0 || s.EvictedErased != 1 {
		t.Errorf("after the second Forget: stats %+v; want an empty cache, 1 evicted as erased", s)
	}
}

// TestForgetRemovesAFileTheIndexLost: an eviction whose unlink failed
// dropped the entry and left the file; Forget removes it all the same,
// and leaves a folder under the key's name (other keys' files) alone.
func TestForgetRemovesAFileTheIndexLost(t *testing.T) {
	w := newWorld(t)
	c := w.start(w.cacheS3)
	lost := w.cachedPath("lost.jpg")
	if err := os.MkdirAll(filepath.Dir(lost), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lost, []byte("an erased original"), 0o644); err != nil {
		t.Fatal(err)
	}
	if removed, err := c.Forget(w.cfg.Mapping.KeyPrefix + "lost.jpg"); !removed || err != nil {
		t.Errorf("Forget of a file not indexed = %v, %v; want true, nil", removed, err)
	}
	if _, err := os.Stat(lost); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Forget: stat %v; want the file gone", err)
	}
	inside := filepath.Join(w.cachedPath("album"), "x.jpg")
	if err := os.MkdirAll(filepath.Dir(inside), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inside, []byte("another key's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if removed, err := c.Forget(w.cfg.Mapping.KeyPrefix + "album"); removed || err != nil {
		t.Errorf("Forget of a key whose path is a folder = %v, %v; want false, nil", removed, err)
	}
	if _, err := os.Stat(inside); err != nil {
		t.Errorf("the file inside the folder: %v; want it kept", err)
	}
}

// TestForgetMakesTheUnlinkDurable: the host acknowledges the erasure once
// Forget returns, and never looks at it again; an unlink a power loss
// undoes would bring the erased original back into the cache, which the
// next start indexes and the web server serves. So Forget fsyncs the
// cached file's folder before it returns, also when the file is already
// gone (an earlier Forget's unlink, maybe not yet on disk).
func TestForgetMakesTheUnlinkDurable(t *testing.T) {
	w := newWorld(t)
	w.offloaded("2026/cached.jpg", randomBytes(20<<10, 74))
	c := w.start(w.cacheS3)
	var synced []string
	hotcache.OnSyncFolder(c, func(name string) { synced = append(synced, name) })
	miss(c, "2026/cached.jpg", 2)
	w.fetchEnded("2026/cached.jpg")
	if _, err := os.Stat(w.cachedPath("2026/cached.jpg")); err != nil {
		t.Fatalf("not fetched: %v", err)
	}
	folder := path.Join(hotcache.FilesFolder(w.cfg.Mapping), "2026")
	for _, want := range []bool{true, false} {
		synced = nil
		if removed, err := c.Forget(w.cfg.Mapping.KeyPrefix + "2026/cached.jpg"); removed != want || err != nil {
			t.Fatalf("Forget = %v, %v; want %v, nil", removed, err, want)
		}
		if !slices.Contains(synced, folder) {
			t.Errorf("Forget (removed %v) returned without an fsync of %s (synced: %q): a power loss may bring the file back after the acknowledgement", want, folder, synced)
		}
	}
}

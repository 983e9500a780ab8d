package hotcache_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
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
	if !c.Forget(w.cfg.Mapping.KeyPrefix + "cached.jpg") {
		t.Errorf("Forget of a cached file = false; want true")
	}
	if _, err := os.Stat(w.cachedPath("cached.jpg")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Forget: stat %v; want the file gone", err)
	}
	if s := c.Stats(); s.Files != 0 || s.Bytes != 0 || s.EvictedErased != 1 {
		t.Errorf("after Forget: stats %+v; want an empty cache, 1 evicted as erased", s)
	}
	if c.Forget(w.cfg.Mapping.KeyPrefix + "other.jpg") {
		t.Errorf("Forget of a key not cached = true; want false")
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
	if c.Forget(key) {
		t.Errorf("Forget during the fetch = true; nothing was cached yet")
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

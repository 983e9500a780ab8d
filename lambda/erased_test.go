package lambda_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/photosleeve/offload"
)

// markErased turns rel's ledger item into a tombstone as "offload-agent
// erase" marks it (an UpdateItem with no condition: a key never recorded
// gets one too).
func (w *world) markErased(t *testing.T, rel string) {
	t.Helper()
	_, err := w.db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName:                aws.String(w.st.Table),
		Key:                      map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: w.prefix + rel}},
		UpdateExpression:         aws.String("SET #at = :at, #in = :in"),
		ExpressionAttributeNames: map[string]string{"#at": offload.ErasedAtAttr, "#in": offload.ErasedInAttr},
		ExpressionAttributeValues: map[string]dbtypes.AttributeValue{
			":at": &dbtypes.AttributeValueMemberS{Value: offload.FormatErasedAt(time.Now())},
			":in": &dbtypes.AttributeValueMemberS{Value: offload.ErasedPartition(w.prefix)},
		},
	})
	if err != nil {
		t.Fatalf("mark %s erased: %v", rel, err)
	}
}

// TestErasedOriginalIsGone: an erased original answers 410 Gone, GET and
// HEAD, with no URL signed and no-store. A resolver that had not cached
// the key answers so at once, and keeps the answer for the window like
// any ledger answer; one that cached it before the mark redirects from
// memory until its window ends, then answers 410 too. A tombstone of a
// key never recorded (no size) is 410 as well.
func TestErasedOriginalIsGone(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.enableVersioning(t)
	w.upload(t, "gone.jpg", []byte("\xff\xd8\xff erased"), "image/jpeg")
	ledger := newLedgerProxy(t, w.st.DynamoDBEndpoint)
	start := windowStart()
	c := newClock(start.Add(10 * time.Second))
	warm := w.cachingHandler(t, ledger.endpoint, c)
	status, first := get(warm, http.MethodGet, "/static/gone.jpg")
	if status != http.StatusFound {
		t.Fatalf("recorded: status %d; want 302", status)
	}

	w.markErased(t, "gone.jpg")
	w.markErased(t, "never.jpg")
	gone := func(h http.Handler, when, target string) {
		t.Helper()
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
			if rec.Code != http.StatusGone || rec.Header().Get("Location") != "" || rec.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("%s: %s %s: status %d, Location %q, Cache-Control %q; want 410, none, no-store",
					when, method, target, rec.Code, rec.Header().Get("Location"), rec.Header().Get("Cache-Control"))
			}
		}
	}
	cold := w.cachingHandler(t, ledger.endpoint, c)
	before := ledger.getItems.Load()
	gone(cold, "erased, a cold resolver", "/static/gone.jpg")
	gone(cold, "erased, never recorded", "/static/never.jpg")
	if n := ledger.getItems.Load() - before; n != 2 {
		t.Errorf("four requests for two erased keys: %d GetItem requests; want 2 (the answers cached)", n)
	}

	c.set(start.Add(59 * time.Second))
	if status, loc := get(warm, http.MethodGet, "/static/gone.jpg"); status != http.StatusFound || loc != first {
		t.Errorf("erased, the warm resolver, same window: status %d, Location %q; want 302 to %q, from memory", status, loc, first)
	}
	c.set(start.Add(time.Minute))
	gone(warm, "erased, the warm resolver, next window", "/static/gone.jpg")
}

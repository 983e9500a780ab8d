package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// requestLog is an HTTP client for the SDK that sends nothing: it notes
// each request's method, query and x-amz-storage-class header, answers a
// HEAD 404 (the key holds nothing, so a multipart upload goes on to its
// create) and fails every other request. It shows the request the agent
// builds for a storage class the local MinIO does not know (it knows
// STANDARD and REDUCED_REDUNDANCY only), which the stack cannot.
type requestLog struct {
	mu   sync.Mutex
	seen []string // "METHOD ?query storage-class"
}

var errNotSent = errors.New("not sent: the test only looks at the request")

func (l *requestLog) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	l.mu.Lock()
	l.seen = append(l.seen, r.Method+" ?"+r.URL.RawQuery+" "+r.Header.Get("X-Amz-Storage-Class"))
	l.mu.Unlock()
	if r.Method == http.MethodHead {
		return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	}
	return nil, errNotSent
}

func (l *requestLog) find(method, query string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.seen {
		if strings.HasPrefix(s, method+" ?"+query) {
			return s, true
		}
	}
	return "", false
}

// TestStorageClassOnTheRequest: with a storage class set, PutObject and
// CreateMultipartUpload carry it as x-amz-storage-class, S3's header for it
// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html,
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateMultipartUpload.html);
// without one, neither carries the header, and S3 stores STANDARD.
func TestStorageClassOnTheRequest(t *testing.T) {
	for _, class := range []types.StorageClass{"", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "REDUCED_REDUNDANCY"} {
		log := &requestLog{}
		client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:9"), UsePathStyle: true,
			Credentials: aws.AnonymousCredentials{}, HTTPClient: log, Retryer: aws.NopRetryer{}})
		store := newS3Store(client, "b", minPartSize, 2, time.Minute)
		store.storageClass = class
		for _, size := range []int{1 << 10, minPartSize + 1} {
			_, _, err := store.put(context.Background(), upload{key: "original/a.jpg", body: bytes.NewReader(make([]byte, size)),
				size: int64(size), contentType: "image/jpeg", beforeCommit: func() error { return nil }})
			if !errors.Is(err, errNotSent) {
				t.Fatalf("class %q, %d bytes: put = %v; want the request log's refusal", class, size, err)
			}
		}
		for _, call := range []struct{ name, method, query string }{
			{"PutObject", http.MethodPut, "x-id=PutObject"},
			{"CreateMultipartUpload", http.MethodPost, "uploads"},
		} {
			seen, ok := log.find(call.method, call.query)
			if !ok {
				t.Errorf("class %q: no %s was sent; requests: %q", class, call.name, log.seen)
				continue
			}
			if got := seen[strings.LastIndex(seen, " ")+1:]; got != string(class) {
				t.Errorf("class %q: %s x-amz-storage-class = %q; want %q", class, call.name, got, class)
			}
		}
	}
}

// TestUploadRecordFitsOnlyItsClass: an upload begun with one storage class
// is never resumed under another: S3 sets the class at
// CreateMultipartUpload and the object completes in it, so resuming would
// store the file in the class the earlier run asked for. A record written
// before the class was recorded has none, and fits only the default.
func TestUploadRecordFitsOnlyItsClass(t *testing.T) {
	id := fileID{dev: 1, ino: 2, size: 3, mtime: time.Unix(4, 0)}
	rec := uploadRecord{Key: "k", UploadID: "u", Host: "h", Dev: 1, Ino: 2, Size: 3, Mtime: time.Unix(4, 0), PartSize: minPartSize}
	if !rec.fits("k", id, minPartSize, "h", "") {
		t.Fatalf("a record without a class does not fit the default class")
	}
	if rec.fits("k", id, minPartSize, "h", "GLACIER_IR") {
		t.Errorf("an upload begun in STANDARD fits GLACIER_IR; want it aborted and begun again")
	}
	rec.StorageClass = "GLACIER_IR"
	if !rec.fits("k", id, minPartSize, "h", "GLACIER_IR") || rec.fits("k", id, minPartSize, "h", "") {
		t.Errorf("an upload begun in GLACIER_IR: fits GLACIER_IR %v, fits the default %v; want true, false",
			rec.fits("k", id, minPartSize, "h", "GLACIER_IR"), rec.fits("k", id, minPartSize, "h", ""))
	}
}

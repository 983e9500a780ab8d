package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"golang.org/x/time/rate"

	"github.com/photosleeve/offload"
)

// objectInfo is what S3 says about a stored object.
type objectInfo struct {
	Size        int64
	CRC64NVME   string // full-object checksum; empty when S3 has none
	ETag        string
	VersionID   string
	ContentType string // what the object was stored with; from a HEAD only
	// StorageClass is the class S3 stores the object in, as the ledger
	// records it ("" for STANDARD; see recordedClass): from a HEAD, or
	// the class the upload asked for.
	StorageClass string
}

// errObjectExists means the key already holds an object: the upload was
// refused with 412 (If-None-Match: *) and nothing was overwritten.
var errObjectExists = errors.New("object already exists")

// errNotVisible means a HEAD was answered 403: either the key holds nothing,
// or the caller may not read it, and S3 does not say which. AWS answers a
// HEAD (or GET) of a missing key with 403, not 404, when the caller lacks
// s3:ListBucket, which the template's AgentPolicy does not grant: "If you
// don't have the s3:ListBucket permission, Amazon S3 returns an HTTP status
// code 403 Forbidden error."
// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html)
// So no decision may rest on a 403 meaning "absent": an upload goes ahead
// (If-None-Match: * still protects whatever is there), and a check that
// needs the object to be there fails.
var errNotVisible = errors.New("no object visible (403: missing, or not readable without s3:ListBucket)")

// upload is one original to store: its bytes, read once from body.
// readChecksum reads r to the end and returns its full-object CRC64NVME
// as S3 encodes it. A read failure is errRead.
func readChecksum(r io.Reader) (string, error) {
	crc := offload.NewCRC64NVME()
	if _, err := io.Copy(crc, r); err != nil {
		return "", fmt.Errorf("%w: %w", errRead, err)
	}
	return offload.EncodeChecksum(crc.Sum64()), nil
}

// errRead marks a failure to read the local file during an upload: the
// disk's fault, not S3's.
var errRead = errors.New("read")

type upload struct {
	key         string
	body        io.Reader
	size        int64
	contentType string
	// beforeCommit runs after the last byte was read and before the object
	// becomes visible; an error aborts the upload. The pipeline checks here
	// that the file did not change while it was read.
	beforeCommit func() error
	// sent, when not nil, is told how many bytes the requests carried so
	// far, as the HTTP client reads them (negative when a retry rewinds).
	// Parts a resumed upload need not send count as sent.
	sent func(delta int64)
	// version is the file version read; a multipart upload is recorded
	// for it and resumed only into it (see uploadRecord).
	version fileID
}

// s3Store uploads originals with direct S3 calls rather than the SDK's
// transfer manager (feature/s3/transfermanager v0.5.5): the transfer manager
// cannot compute a full-object CRC64NVME while it reads, so proving the
// whole object would take a second read pass of every file, and it drops
// part-level CRC64NVME checksums when it completes an upload.
//
// Memory is bounded in bytes: the buffers of every request in flight, small
// files and parts alike, share one budget of PartSize × Concurrency bytes
// (see bufferPool), so a 100 KiB file holds 128 KiB of it, not a part's.
type s3Store struct {
	client    *s3.Client
	bandwidth *rate.Limiter // nil: no limit
	bucket    string
	// storageClass is what every upload asks for ("": none, STANDARD).
	storageClass types.StorageClass
	partSize     int64
	callTimeout  time.Duration
	mem          *bufferPool
	// mine holds the multipart uploads this process created and has not
	// completed or aborted: true while one is live, false once its own
	// abort failed (an orphan of ours, to abort again later).
	mu   sync.Mutex
	mine map[string]bool // upload id -> live
	// records of the multipart uploads in progress, for resuming them
	// (nil: never resumed); resumed counts the bytes of the parts a
	// resumed upload did not send again.
	records *resumeRecords
	resumed atomic.Int64
	log     *slog.Logger // says when an upload is resumed
}

func newS3Store(client *s3.Client, bucket string, partSize int64, concurrency int, callTimeout time.Duration) *s3Store {
	return &s3Store{client: client, bucket: bucket, partSize: partSize, callTimeout: callTimeout,
		mem: newBufferPool(partSize*int64(concurrency), partSize), mine: map[string]bool{}}
}

// put stores the upload under its key unless the key exists, reading the
// body exactly once and sending the full-object CRC64NVME it computed, which
// S3 checks (a mismatch is refused with 400). It returns that checksum; with
// a nil error S3 has accepted it for the whole object, and with
// errObjectExists the caller compares it with the existing object's.
func (s *s3Store) put(ctx context.Context, u upload) (string, objectInfo, error) {
	partSize := s.partSize
	if u.size > partSize*maxParts {
		// S3 allows 10,000 parts; larger files get larger parts.
		partSize = (u.size + maxParts - 1) / maxParts
	}
	if u.size <= partSize {
		return s.putSingle(ctx, u)
	}
	return s.putMultipart(ctx, u, partSize)
}

// putSingle is one PutObject: read into a buffer while hashing, check, send.
func (s *s3Store) putSingle(ctx context.Context, u upload) (string, objectInfo, error) {
	buf, err := s.mem.get(ctx, u.size)
	if err != nil {
		return "", objectInfo{}, err
	}
	defer s.mem.put(buf)
	crc := offload.NewCRC64NVME()
	if _, err := io.ReadFull(io.TeeReader(u.body, crc), buf); err != nil {
		return "", objectInfo{}, fmt.Errorf("%w: %w", errRead, err)
	}
	sum := offload.EncodeChecksum(crc.Sum64())
	if err := u.beforeCommit(); err != nil {
		return sum, objectInfo{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	out, err := s.client.PutObject(cctx, &s3.PutObjectInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(u.key),
		Body:              s.body(cctx, buf, u),
		ContentLength:     aws.Int64(u.size),
		ContentType:       aws.String(u.contentType),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
		ChecksumCRC64NVME: aws.String(sum),
		IfNoneMatch:       aws.String("*"),
		StorageClass:      s.storageClass, // "" sends no header: STANDARD
	})
	if err != nil {
		return sum, objectInfo{}, translate("put "+u.key, err)
	}
	return sum, objectInfo{Size: u.size, CRC64NVME: aws.ToString(out.ChecksumCRC64NVME),
		ETag: aws.ToString(out.ETag), VersionID: aws.ToString(out.VersionId), StorageClass: recordedClass(s.storageClass)}, nil
}

// putMultipart reads the file part by part in order, hashing the whole
// object as it goes, uploads the parts in parallel, and completes with the
// full-object checksum and If-None-Match: *.
func (s *s3Store) putMultipart(ctx context.Context, u upload, partSize int64) (string, objectInfo, error) {
	// A large file is worth one HEAD first: after a restart it is usually
	// already there, and re-sending gigabytes only to be refused is waste.
	// Only a 200 is acted on. A 404, or the 403 that AWS sends for a missing
	// key to a caller without s3:ListBucket (errNotVisible), means "not
	// known to exist": the upload goes ahead, and If-None-Match: * at the
	// end still refuses to replace anything that is there.
	if _, err := s.head(ctx, u.key); err == nil {
		// An upload recorded for this key can no longer complete (a run
		// killed after its Complete, or a Complete whose answer was lost).
		if rec, ok := s.records.load(u.key); ok && s.abortID(u.key, rec.UploadID) == nil {
			s.records.remove(u.key, rec.UploadID)
		}
		sum, err := readChecksum(u.body)
		if err != nil {
			return "", objectInfo{}, err
		}
		return sum, objectInfo{}, errObjectExists
	} else if !errors.Is(err, offload.ErrNotFound) && !errors.Is(err, errNotVisible) {
		return "", objectInfo{}, err
	}

	uploadID, have, err := s.resumable(ctx, u, partSize)
	if err != nil {
		return "", objectInfo{}, err
	}
	if uploadID != "" && s.log != nil {
		var held int64
		for _, p := range have {
			held += aws.ToInt64(p.Size)
		}
		s.log.Info("resuming an interrupted upload: parts S3 holds with the checksum of the bytes read are not sent again",
			"key", u.key, "upload_id", uploadID, "parts_held", len(have), "bytes_held", held)
	}
	if uploadID == "" {
		s.abortStale(ctx, u.key)
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
		created, err := s.client.CreateMultipartUpload(cctx, &s3.CreateMultipartUploadInput{
			Bucket:            aws.String(s.bucket),
			Key:               aws.String(u.key),
			ContentType:       aws.String(u.contentType),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
			ChecksumType:      types.ChecksumTypeFullObject,
			// The object completes in the class the upload was
			// created with: a resumed upload must have asked for the
			// same one (uploadRecord.fits).
			StorageClass: s.storageClass,
		})
		cancel()
		if err != nil {
			return "", objectInfo{}, translate("create multipart upload "+u.key, err)
		}
		uploadID = aws.ToString(created.UploadId)
		// Without its record the upload is simply not resumable: the next
		// run starts again, and aborts this one once its own completes
		// (abortKey).
		_ = s.records.save(uploadRecord{Key: u.key, UploadID: uploadID, Host: s.records.hostName(),
			Dev: u.version.dev, Ino: u.version.ino, Size: u.version.size, Mtime: u.version.mtime, PartSize: partSize,
			StorageClass: string(s.storageClass)})
	}
	s.setMine(uploadID, true)
	committed, keep := false, false
	defer func() {
		switch {
		case committed:
			s.records.remove(u.key, uploadID)
		case keep:
			// Left for the next attempt to resume: no longer live, but
			// not an orphan either while its record fits the file.
			s.forget(uploadID)
		default:
			s.abort(u.key, uploadID)
			s.records.remove(u.key, uploadID)
		}
	}()
	// A create whose answer was lost may have made an upload all the same:
	// on an SDK retry that then succeeded (the soak found one), or on an
	// attempt that failed outright, the request having reached S3 before
	// the connection broke (the soak found two: MinIO killed mid-answer,
	// the SDK's retry quota spent). Such an upload was started by this
	// agent, so abortStale leaves it, and nothing else would end it. Once
	// ours is complete no other upload of the key can complete
	// (If-None-Match), so every other one is aborted: one listing per
	// multipart file.
	defer func() {
		if committed {
			s.abortKey(ctx, u.key)
		}
	}()

	sum, parts, err := s.uploadParts(ctx, u, uploadID, partSize, have)
	if err != nil {
		keep = s.records != nil && resumableAfter(err)
		return sum, objectInfo{}, err
	}
	if err := u.beforeCommit(); err != nil {
		return sum, objectInfo{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	out, err := s.client.CompleteMultipartUpload(cctx, &s3.CompleteMultipartUploadInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(u.key),
		UploadId:          aws.String(uploadID),
		MultipartUpload:   &types.CompletedMultipartUpload{Parts: parts},
		ChecksumCRC64NVME: aws.String(sum),
		ChecksumType:      types.ChecksumTypeFullObject,
		MpuObjectSize:     aws.Int64(u.size),
		IfNoneMatch:       aws.String("*"),
	})
	if err != nil {
		err = translate("complete multipart upload "+u.key, err)
		keep = s.records != nil && resumableAfter(err)
		return sum, objectInfo{}, err
	}
	committed = true
	s.forget(uploadID)
	return sum, objectInfo{Size: u.size, CRC64NVME: aws.ToString(out.ChecksumCRC64NVME),
		ETag: aws.ToString(out.ETag), VersionID: aws.ToString(out.VersionId), StorageClass: recordedClass(s.storageClass)}, nil
}

// uploadParts reads the body sequentially (one pass) and sends each part as
// soon as it is read, as many at once as the memory budget allows. A part
// that S3 already holds for this upload (have, from ListParts), with the
// same size and the CRC64NVME of the bytes just read, is not sent again.
func (s *s3Store) uploadParts(ctx context.Context, u upload, uploadID string, partSize int64, have map[int32]types.Part) (string, []types.CompletedPart, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := int((u.size + partSize - 1) / partSize)
	parts := make([]types.CompletedPart, n)
	// Each part is hashed on its own goroutine, off the one that reads the
	// file, and the parts' sums are combined into the full-object one: each
	// byte is read once and hashed once.
	partSums := make([]uint64, n)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
	}
	for i := range n {
		if ctx.Err() != nil {
			fail(ctx.Err()) // a part failed (or shutdown): read no further
			break
		}
		size := min(partSize, u.size-int64(i)*partSize)
		buf, err := s.mem.get(ctx, size)
		if err != nil {
			fail(err)
			break
		}
		if _, err := io.ReadFull(u.body, buf); err != nil {
			s.mem.put(buf)
			fail(fmt.Errorf("%w: %w", errRead, err))
			break
		}
		wg.Add(1)
		go func(num int32, buf []byte) {
			defer wg.Done()
			defer s.mem.put(buf)
			partCRC := offload.NewCRC64NVME()
			partCRC.Write(buf)
			partSums[num-1] = partCRC.Sum64()
			sum := offload.EncodeChecksum(partSums[num-1])
			if p, ok := have[num]; ok && aws.ToInt64(p.Size) == int64(len(buf)) && aws.ToString(p.ChecksumCRC64NVME) == sum {
				parts[num-1] = types.CompletedPart{PartNumber: aws.Int32(num), ETag: p.ETag, ChecksumCRC64NVME: aws.String(sum)}
				s.resumed.Add(int64(len(buf)))
				if u.sent != nil {
					u.sent(int64(len(buf)))
				}
				return
			}
			cctx, ccancel := context.WithTimeout(ctx, s.sendTimeout(int64(len(buf))))
			defer ccancel()
			out, err := s.client.UploadPart(cctx, &s3.UploadPartInput{
				Bucket:            aws.String(s.bucket),
				Key:               aws.String(u.key),
				UploadId:          aws.String(uploadID),
				PartNumber:        aws.Int32(num),
				Body:              s.body(cctx, buf, u),
				ContentLength:     aws.Int64(int64(len(buf))),
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
				ChecksumCRC64NVME: aws.String(sum),
			})
			if err != nil {
				fail(translate(fmt.Sprintf("upload part %d of %s", num, u.key), err))
				return
			}
			parts[num-1] = types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag, ChecksumCRC64NVME: aws.String(sum)}
		}(int32(i+1), buf)
	}
	wg.Wait()
	var full uint64
	for i, sum := range partSums {
		full = offload.CombineCRC64NVME(full, sum, min(partSize, u.size-int64(i)*partSize))
	}
	return offload.EncodeChecksum(full), parts, firstErr
}

// resumable returns the upload to resume for this file, and the parts S3
// holds of it, or "" to start a new one. It resumes only an upload this
// host recorded for this very file version and part size, that S3 still
// has, and whose parts it can list with their CRC64NVME. A record that does
// not fit, or whose parts S3 refuses to list, has its upload aborted by id
// and is dropped: the file then goes in a new upload. While S3 cannot be
// asked (no answer, a 5xx), it returns an error and the record stays, so
// a key never has two uploads of this host open: an upload dropped without
// its abort would be invisible to every later listing of MinIO's after a
// restart (the soak found one).
func (s *s3Store) resumable(ctx context.Context, u upload, partSize int64) (string, map[int32]types.Part, error) {
	rec, ok := s.records.load(u.key)
	if !ok {
		return "", nil, nil
	}
	drop := func() (string, map[int32]types.Part, error) {
		if err := s.abortID(u.key, rec.UploadID); err != nil {
			return "", nil, fmt.Errorf("abort the upload recorded for %s: %w", u.key, err)
		}
		s.records.remove(u.key, rec.UploadID)
		return "", nil, nil
	}
	if !rec.fits(u.key, u.version, partSize, s.records.hostName(), string(s.storageClass)) {
		return drop()
	}
	have := map[int32]types.Part{}
	p := s3.NewListPartsPaginator(s.client, &s3.ListPartsInput{Bucket: aws.String(s.bucket), Key: aws.String(u.key), UploadId: aws.String(rec.UploadID)})
	for p.HasMorePages() {
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
		page, err := p.NextPage(cctx)
		cancel()
		switch {
		case err != nil && resumableAfter(err):
			return "", nil, translate("list parts of "+u.key, err)
		case err != nil:
			return drop() // gone (404), or refused: start afresh
		}
		for _, part := range page.Parts {
			if aws.ToString(part.ChecksumCRC64NVME) != "" {
				have[aws.ToInt32(part.PartNumber)] = part
			}
		}
	}
	return rec.UploadID, have, nil
}

// resumableAfter reports whether an upload that failed with err is kept for
// the next attempt to resume: after a timeout, a cut connection, shutdown
// or a server error. Not after the file changed or could not be read, nor
// after S3 refused a request (a 4xx): then it is aborted.
func resumableAfter(err error) bool {
	if errors.Is(err, errChanged) || errors.Is(err, errRead) || errors.Is(err, errObjectExists) {
		return false
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		// 0: no answer at all (the SDK wraps a cut connection this way too).
		code := re.HTTPStatusCode()
		return code == 0 || code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
	}
	return true
}

// abortCallTimeout bounds an abort, which runs even after the caller's
// context ended (shutdown), so it gets a context of its own.
const abortCallTimeout = 10 * time.Second

// abortID aborts the upload uploadID of key and says whether it is gone
// (a 404: it already was).
func (s *s3Store) abortID(key, uploadID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), abortCallTimeout)
	defer cancel()
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: aws.String(uploadID),
	})
	var re *smithyhttp.ResponseError
	if err == nil || errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
		s.forget(uploadID)
		return nil
	}
	return err
}

// abort drops a multipart upload; a failure only leaves parts that the
// bucket's lifecycle rule (AbortIncompleteMultipartUpload) removes.
func (s *s3Store) abort(key, uploadID string) {
	if s.abortID(key, uploadID) == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mine[uploadID]; ok {
		s.mine[uploadID] = false // an orphan of ours now; abortStale and the sweep retry it
	}
}

func (s *s3Store) setMine(uploadID string, live bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mine[uploadID] = live
}

func (s *s3Store) forget(uploadID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mine, uploadID)
}

// ours reports whether this process created the upload, and whether it is
// still live (being sent) rather than left behind by a failed abort.
func (s *s3Store) ours(uploadID string) (mine, live bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	live, mine = s.mine[uploadID]
	return mine, live
}

// abortStale aborts the multipart uploads of key that this agent made and
// whose abort failed (S3 was unreachable). It leaves alone every other
// upload of the key, begun before this agent started or not: it may be
// another host's, live (a shared web root, or a copy of it on each host),
// and two hosts holding the same file never cancel each other. A dead
// run's upload this host recorded was dealt with by resumable; one it
// never recorded goes once this upload completes (abortKey). Idempotent;
// failures are harmless (see abort).
func (s *s3Store) abortStale(ctx context.Context, key string) {
	_, _ = s.abortUploads(ctx, key, func(u types.MultipartUpload, _ time.Time) bool {
		mine, live := s.ours(aws.ToString(u.UploadId))
		return aws.ToString(u.Key) == key && mine && !live
	})
}

// abortKey aborts every multipart upload of key but this agent's live
// ones. For a key that now holds an object: no other upload of it can
// complete (If-None-Match), so cutting one off loses nothing.
func (s *s3Store) abortKey(ctx context.Context, key string) {
	_, _ = s.abortUploads(ctx, key, func(u types.MultipartUpload, _ time.Time) bool {
		mine, live := s.ours(aws.ToString(u.UploadId))
		return aws.ToString(u.Key) == key && !(mine && live)
	})
}

// abortUploads aborts every multipart upload under prefix that stale
// selects, page by page, and returns how many it aborted. stale gets S3's
// clock at the listing (serverTime), so that an upload's age never depends
// on this host's clock: a clock a day ahead would make every upload look
// older than --orphan-age.
func (s *s3Store) abortUploads(ctx context.Context, prefix string, stale func(u types.MultipartUpload, s3Now time.Time) bool) (int, error) {
	n := 0
	err := s.eachUpload(ctx, prefix, func(u types.MultipartUpload, now time.Time) {
		if stale(u, now) {
			s.abort(aws.ToString(u.Key), aws.ToString(u.UploadId))
			n++
		}
	})
	return n, err
}

// eachUpload calls f for every multipart upload under prefix, page by
// page, with S3's clock at the listing (serverTime).
func (s *s3Store) eachUpload(ctx context.Context, prefix string, f func(u types.MultipartUpload, s3Now time.Time)) error {
	p := s3.NewListMultipartUploadsPaginator(s.client, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
		page, err := p.NextPage(cctx)
		cancel()
		if err != nil {
			return translate("list multipart uploads", err)
		}
		now, ok := serverTime(page.ResultMetadata)
		if !ok {
			return errors.New("list multipart uploads: the answer has no Date header; uploads are not aborted without S3's clock")
		}
		for _, u := range page.Uploads {
			f(u, now)
		}
	}
	return nil
}

// serverTime is S3's clock when it answered: the response's Date header,
// "the date and time that Amazon S3 responded", common to S3's responses
// (https://docs.aws.amazon.com/AmazonS3/latest/API/RESTCommonResponseHeaders.html;
// MinIO sends it too), an HTTP-date in whole seconds.
func serverTime(md middleware.Metadata) (time.Time, bool) {
	raw, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response)
	if !ok || raw == nil {
		return time.Time{}, false
	}
	t, err := http.ParseTime(raw.Header.Get("Date"))
	return t, err == nil
}

// sendTimeout bounds one request that carries n bytes. The configuration
// check makes the call timeout cover the whole memory budget sent at
// --bwlimit (every body in flight shares both); a part larger than the
// budget (only in a file beyond 10,000 budget-sized parts, 640 GiB with
// the defaults) goes alone, and gets the time it needs at the limit on top.
func (s *s3Store) sendTimeout(n int64) time.Duration {
	if s.bandwidth == nil || n <= s.mem.total {
		return s.callTimeout
	}
	return s.callTimeout + time.Duration(float64(n)/float64(s.bandwidth.Limit())*float64(time.Second))
}

// head returns what S3 holds under key, with its full-object checksum.
func (s *s3Store) head(ctx context.Context, key string) (objectInfo, error) {
	cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	out, err := s.client.HeadObject(cctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled,
	})
	return headAnswer(key, out, err)
}

// headVersion is head of one version of key ("" for the current one). A
// HEAD that names a version needs s3:GetObjectVersion
// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html);
// it is a call of its own so that the template's grant check
// (template_calls_test.go) sees which callers need that grant.
func (s *s3Store) headVersion(ctx context.Context, key, versionID string) (objectInfo, error) {
	if versionID == "" {
		return s.head(ctx, key)
	}
	cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	out, err := s.client.HeadObject(cctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), VersionId: aws.String(versionID), ChecksumMode: types.ChecksumModeEnabled,
	})
	return headAnswer(key, out, err)
}

// headAnswer turns a HeadObject answer into objectInfo, or its error into
// the pipeline's: 403 is errNotVisible (AWS answers it for a missing key to
// a caller without s3:ListBucket), the rest as translate says.
func headAnswer(key string, out *s3.HeadObjectOutput, err error) (objectInfo, error) {
	if err != nil {
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden {
			return objectInfo{}, fmt.Errorf("head %s: %w: %w", key, errNotVisible, err)
		}
		return objectInfo{}, translate("head "+key, err)
	}
	info := objectInfo{Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag), VersionID: aws.ToString(out.VersionId),
		ContentType: aws.ToString(out.ContentType), StorageClass: recordedClass(types.StorageClass(out.StorageClass))}
	// A composite checksum (of the parts' checksums) proves nothing about
	// the whole object; only a full-object one counts.
	if out.ChecksumType != types.ChecksumTypeComposite {
		info.CRC64NVME = aws.ToString(out.ChecksumCRC64NVME)
	}
	return info, nil
}

// translate turns the S3 errors the pipeline acts on into sentinels. The
// SDK's error stays wrapped too: fileFault reads its code and status.
func translate(op string, err error) error {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusPreconditionFailed:
			return fmt.Errorf("%s: %w", op, errObjectExists)
		case http.StatusNotFound:
			return fmt.Errorf("%s: %w: %w", op, offload.ErrNotFound, err)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

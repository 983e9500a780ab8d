package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/photosleeve/offload"
)

// Eraser removes originals for good, one key at a time ("offload-agent
// erase"): it marks the ledger item erased, then aborts the key's open
// multipart uploads, deletes every version and delete marker of exactly
// that key, and lists its versions once more. It runs with the template's
// EraserPolicy, not the agent's: the agent can never delete a version.
//
// Guarantees: nothing is deleted before the ledger says the key is erased,
// so the resolver refuses it from then on; the mark stays whatever fails,
// and EraseDoneAttr is set only when the last listing showed nothing of
// the key. What S3 refuses (a version under Object Lock, MFA delete, a
// missing permission) is reported, never forced: no governance bypass is
// sent. Uploads are aborted first, so none completes into a version after
// the deletes; an object written to the key during the deletes shows in
// the last listing, and the key is reported not done (a re-run removes
// it). erased_at is S3's clock, not this machine's, and each run stamps it
// again, so every host looks at the erasure again. Erase is idempotent: a
// second run finds nothing to remove.
type Eraser struct {
	S3     *s3.Client
	DB     *dynamodb.Client
	Bucket string
	Table  string
	// KeyPrefix is the site's key prefix: the erasures index's partition
	// (offload.ErasedPartition) that the site's hosts read.
	KeyPrefix string
	By, Why   string // who asked, and why: recorded on the tombstone
	// CallTimeout bounds each call; zero is DefaultCallTimeout.
	CallTimeout time.Duration
	// CDN, with Distribution, makes each erasure also invalidate the
	// key's path in that CloudFront distribution (see erase_cdn.go);
	// nil when the site serves no CDN. CDNWait bounds the wait for the
	// invalidation to complete (zero: DefaultCDNWait).
	CDN          CDNInvalidator
	Distribution string
	CDNWait      time.Duration

	now func() time.Time // this machine's clock, when S3 gives no Date; tests set it
}

// EraseReport is what Erase did to one key: what it removed, and each call
// that failed.
type EraseReport struct {
	Key           string `json:"key"`
	Versions      int    `json:"versions"`       // object versions deleted
	DeleteMarkers int    `json:"delete_markers"` // delete markers deleted
	Uploads       int    `json:"uploads"`        // open multipart uploads aborted
	// Invalidation is the ID of the CDN invalidation made for the key
	// (empty without a CDN, or when none was made).
	Invalidation string         `json:"invalidation,omitempty"`
	Failures     []EraseFailure `json:"failures,omitempty"`
	// Left is how many versions and delete markers the last listing still
	// showed: written to the key during the erase. A re-run removes them.
	Left int `json:"left,omitempty"`
	// NothingFound: the ledger had no item for the key and S3 held nothing
	// of it. The name is likely wrong (a typo, another key prefix). The
	// mark stays, so a host holding a file by that name removes it.
	NothingFound bool `json:"nothing_found,omitempty"`
}

// Done reports whether the erasure is complete: nothing failed, the last
// listing showed nothing of the key, the ledger says so, and the key was
// known (recorded in the ledger, or stored in S3).
func (r EraseReport) Done() bool { return len(r.Failures) == 0 && r.Left == 0 && !r.NothingFound }

// EraseFailure is one call of an erasure that failed.
type EraseFailure struct {
	Step      string `json:"step"` // one of the erase* steps below
	VersionID string `json:"version_id,omitempty"`
	UploadID  string `json:"upload_id,omitempty"`
	Status    int    `json:"status,omitempty"` // HTTP status, when there was an answer
	Code      string `json:"code,omitempty"`   // S3's or DynamoDB's error code
	Message   string `json:"message"`
	// Permission is the IAM action the call needs, set when it was refused
	// for want of one (403 AccessDenied; DynamoDB's AccessDeniedException).
	Permission string `json:"missing_permission,omitempty"`
	// Cause is why S3 refused, and what to do, when the refusal is not for
	// want of a permission (Object Lock, MFA delete): then Permission is
	// empty.
	Cause string `json:"cause,omitempty"`
}

func (f EraseFailure) String() string {
	s := f.Step
	switch {
	case f.VersionID != "":
		s += " " + f.VersionID
	case f.UploadID != "":
		s += " " + f.UploadID
	}
	s += ": "
	if f.Status != 0 {
		s += fmt.Sprintf("%d ", f.Status)
	}
	if f.Code != "" {
		s += f.Code + ": "
	}
	s += f.Message
	switch {
	case f.Cause != "":
		s += " (" + f.Cause + ")"
	case f.Permission != "":
		s += " (missing permission " + f.Permission + ")"
	}
	return s
}

// The steps of an erasure, as EraseFailure names them, and the IAM action
// each needs (the template's EraserPolicy grants exactly these).
const (
	eraseMark          = "mark the ledger item"
	eraseListVersions  = "list versions"
	eraseCheck         = "list versions again"
	eraseDeleteVersion = "delete version"
	eraseDeleteMarker  = "delete marker"
	eraseListUploads   = "list uploads"
	eraseAbortUpload   = "abort upload"
	eraseInvalidate    = "invalidate the CDN's copies"
	eraseRecordDone    = "record the erasure done"
)

var erasePermission = map[string]string{
	eraseMark:          "dynamodb:UpdateItem",
	eraseListVersions:  "s3:ListBucketVersions",
	eraseCheck:         "s3:ListBucketVersions",
	eraseDeleteVersion: "s3:DeleteObjectVersion",
	eraseDeleteMarker:  "s3:DeleteObjectVersion",
	eraseListUploads:   "s3:ListBucketMultipartUploads",
	eraseAbortUpload:   "s3:AbortMultipartUpload",
	eraseInvalidate:    "cloudfront:CreateInvalidation and cloudfront:GetInvalidation",
	eraseRecordDone:    "dynamodb:UpdateItem",
}

// Erase erases key: mark, abort uploads, delete versions and markers,
// list again, invalidate the CDN's copies (with a CDN), record done. A failed mark stops it before anything is
// deleted; any other failure, or anything the last listing shows, leaves
// the rest to a re-run and EraseDoneAttr unset. A key the ledger never
// recorded and S3 never held is recorded done but reported not done
// (NothingFound).
func (e *Eraser) Erase(ctx context.Context, key string) EraseReport {
	r := EraseReport{Key: key}
	known, err := e.mark(ctx, key, e.s3Now(ctx, key))
	if err != nil {
		r.fail(eraseMark, "", "", err)
		return r
	}
	e.abortUploads(ctx, &r) // first: none can then complete into a version
	e.deleteVersions(ctx, &r)
	if len(r.Failures) > 0 {
		return r
	}
	left, err := e.listVersions(ctx, key)
	if err != nil {
		r.fail(eraseCheck, "", "", err)
		return r
	}
	if r.Left = len(left); r.Left > 0 {
		return r
	}
	if e.CDN != nil {
		// After the deletes: an edge that misses from now on finds
		// nothing at the origin to cache again.
		id, err := e.invalidate(ctx, key)
		r.Invalidation = id
		if err != nil {
			r.fail(eraseInvalidate, "", "", err)
			return r
		}
	}
	r.NothingFound = !known && r.Versions+r.DeleteMarkers+r.Uploads == 0
	if err := e.recordDone(ctx, key, r.NothingFound); err != nil {
		r.fail(eraseRecordDone, "", "", err)
	}
	return r
}

func (e *Eraser) callTimeout() time.Duration {
	if e.CallTimeout > 0 {
		return e.CallTimeout
	}
	return DefaultCallTimeout
}

func attrS(v string) dbtypes.AttributeValue { return &dbtypes.AttributeValueMemberS{Value: v} }

// erasedNow is now as the erasure attributes hold it: fixed width, so the
// erasures index sorts erased_at as time (offload.FormatErasedAt).
func erasedNow() string { return offload.FormatErasedAt(time.Now()) }

// s3Now is S3's clock, from the Date of a listing of key (one entry),
// for erased_at. Hosts look for erasures from their watermark, the latest
// erased_at they saw, minus erasureOverlap: a stamp from a machine whose
// clock is further behind would never be looked at. S3's Date (whole
// seconds; serverTime) is the one clock every eraser shares. An error
// answer has a Date too; only without one (S3 unreachable) is this
// machine's clock used, and the mark goes ahead: the resolver must stop
// serving the key even then.
func (e *Eraser) s3Now(ctx context.Context, key string) time.Time {
	ctx, cancel := context.WithTimeout(ctx, e.callTimeout())
	defer cancel()
	out, err := e.S3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(e.Bucket), Prefix: aws.String(key), MaxKeys: aws.Int32(1)})
	if err == nil {
		if t, ok := serverTime(out.ResultMetadata); ok {
			return t
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		if t, err := http.ParseTime(re.Response.Header.Get("Date")); err == nil {
			return t
		}
	}
	if e.now != nil {
		return e.now()
	}
	return time.Now()
}

// mark makes the key's ledger item a tombstone stamped at, creating it if
// the key was never recorded (no condition), and reports whether the key
// was known before: the item was the record of an original, or the mark of
// an earlier run that found something of the key. The mark of a run that
// found nothing (erase_nothing) is not, so running that erase again still
// reports the name unknown. A re-run stamps erased_at again, so that every
// host, whatever its watermark, looks at the erasure again (handling it
// twice is harmless), and clears erase_done and erase_nothing until this
// run has finished.
func (e *Eraser) mark(ctx context.Context, key string, at time.Time) (known bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.callTimeout())
	defer cancel()
	out, err := e.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:        aws.String(e.Table),
		Key:              map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: attrS(key)},
		UpdateExpression: aws.String("SET #at = :at, #in = :in, #by = :by, #why = :why REMOVE #done, #nothing"),
		ExpressionAttributeNames: map[string]string{"#at": offload.ErasedAtAttr, "#in": offload.ErasedInAttr,
			"#by": offload.ErasedByAttr, "#why": offload.ErasedWhyAttr, "#done": offload.EraseDoneAttr, "#nothing": offload.EraseNothingAttr},
		ExpressionAttributeValues: map[string]dbtypes.AttributeValue{":at": attrS(offload.FormatErasedAt(at)),
			":in": attrS(offload.ErasedPartition(e.KeyPrefix)), ":by": attrS(e.By), ":why": attrS(e.Why)},
		ReturnValues: dbtypes.ReturnValueAllOld,
	})
	if err != nil {
		return false, err
	}
	has := func(name string) bool { _, ok := out.Attributes[name]; return ok }
	// crc64nvme is written by every record, never by a mark.
	return has("crc64nvme") || has(offload.EraseDoneAttr) && !has(offload.EraseNothingAttr), nil
}

// recordDone sets erase_done on the tombstone mark made, and
// erase_nothing when this run found nothing of the key.
func (e *Eraser) recordDone(ctx context.Context, key string, nothing bool) error {
	ctx, cancel := context.WithTimeout(ctx, e.callTimeout())
	defer cancel()
	update := "SET #done = :now"
	names := map[string]string{"#done": offload.EraseDoneAttr, "#at": offload.ErasedAtAttr}
	values := map[string]dbtypes.AttributeValue{":now": attrS(erasedNow())}
	if nothing {
		update += ", #nothing = :true"
		names["#nothing"] = offload.EraseNothingAttr
		values[":true"] = attrS("true")
	}
	_, err := e.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(e.Table),
		Key:                       map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: attrS(key)},
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String("attribute_exists(#at)"), // the mark is still there
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	return err
}

// objectVersion is one version or delete marker of a key.
type objectVersion struct {
	id     string
	marker bool
}

// deleteVersions deletes every version and delete marker of exactly key,
// one DeleteObject with its version id each: permanent, and no new marker
// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeletingObjectVersions.html).
// Deleting a version that is already gone succeeds, so a re-run is
// harmless. One call per version, not DeleteObjects, which reports
// failures inside a 200 and needs a checksum header; a key has few.
func (e *Eraser) deleteVersions(ctx context.Context, r *EraseReport) {
	versions, err := e.listVersions(ctx, r.Key)
	if err != nil {
		r.fail(eraseListVersions, "", "", err)
	}
	for _, v := range versions { // those listed before a failure too
		step := eraseDeleteVersion
		if v.marker {
			step = eraseDeleteMarker
		}
		if err := e.deleteVersion(ctx, r.Key, v.id); err != nil {
			r.fail(step, v.id, "", err)
			continue
		}
		if v.marker {
			r.DeleteMarkers++
		} else {
			r.Versions++
		}
	}
}

func (e *Eraser) deleteVersion(ctx context.Context, key, id string) error {
	ctx, cancel := context.WithTimeout(ctx, e.callTimeout())
	defer cancel()
	_, err := e.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(e.Bucket), Key: aws.String(key), VersionId: aws.String(id)})
	return err
}

// listVersions lists the versions and delete markers of exactly key. The
// listing is by prefix, which also matches key.bak and key/x: those are
// left out. Keys are listed in order, each page a contiguous run of them,
// so the first page that shows a longer key holds the last of key's.
func (e *Eraser) listVersions(ctx context.Context, key string) ([]objectVersion, error) {
	var out []objectVersion
	p := s3.NewListObjectVersionsPaginator(e.S3, &s3.ListObjectVersionsInput{Bucket: aws.String(e.Bucket), Prefix: aws.String(key)})
	for p.HasMorePages() {
		cctx, cancel := context.WithTimeout(ctx, e.callTimeout())
		page, err := p.NextPage(cctx)
		cancel()
		if err != nil {
			return out, err
		}
		past := false
		for _, v := range page.Versions {
			if aws.ToString(v.Key) != key {
				past = true
				continue
			}
			out = append(out, objectVersion{id: aws.ToString(v.VersionId)})
		}
		for _, m := range page.DeleteMarkers {
			if aws.ToString(m.Key) != key {
				past = true
				continue
			}
			out = append(out, objectVersion{id: aws.ToString(m.VersionId), marker: true})
		}
		if past {
			break
		}
	}
	return out, nil
}

// abortUploads aborts every open multipart upload of exactly key (AWS
// lists uploads by prefix; MinIO by whole key only), so that none can
// complete into a new version after the erase.
func (e *Eraser) abortUploads(ctx context.Context, r *EraseReport) {
	st := &s3Store{client: e.S3, bucket: e.Bucket, callTimeout: e.callTimeout(), mine: map[string]bool{}}
	var open []string
	err := st.eachUpload(ctx, r.Key, func(u types.MultipartUpload, _ time.Time) {
		if aws.ToString(u.Key) == r.Key {
			open = append(open, aws.ToString(u.UploadId))
		}
	})
	if err != nil {
		r.fail(eraseListUploads, "", "", err)
	}
	for _, id := range open {
		if err := st.abortID(r.Key, id); err != nil {
			r.fail(eraseAbortUpload, "", id, err)
			continue
		}
		r.Uploads++
	}
}

// fail records a failed call: S3's or DynamoDB's status, code and
// message, and the permission the step needs when it was refused.
func (r *EraseReport) fail(step, versionID, uploadID string, err error) {
	f := EraseFailure{Step: step, VersionID: versionID, UploadID: uploadID, Message: err.Error()}
	var api smithy.APIError
	if errors.As(err, &api) {
		f.Code = api.ErrorCode()
		if m := api.ErrorMessage(); m != "" {
			f.Message = m
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		f.Status = re.HTTPStatusCode()
	}
	if f.Status == 403 || f.Code == "AccessDenied" || f.Code == "AccessDeniedException" {
		if f.Cause = refusalCause(f.Message); f.Cause == "" {
			f.Permission = erasePermission[step]
		}
	}
	r.Failures = append(r.Failures, f)
}

// refusalCause is why S3 refused a delete with 403 AccessDenied when the
// eraser holds the permission, and what to do; empty for a plain refusal.
// AWS answers Object Lock and MFA delete with the same code as a missing
// permission, so only the message tells them apart: "Access Denied
// because object protected by object lock." and "Mfa Authentication must
// be used for this request".
func refusalCause(message string) string {
	m := strings.ToLower(message)
	switch {
	case strings.Contains(m, "object lock"):
		return "the version is under Object Lock: wait until its retention ends, or have its legal hold removed, then run erase again"
	case strings.Contains(m, "mfa"):
		return "the bucket has MFA delete: a version is deleted only with the root user's MFA code, which erase does not send; " +
			"delete it as the root user with MFA, or turn MFA delete off, then run erase again"
	}
	return ""
}

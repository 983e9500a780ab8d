package doctor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
)

// AWS is what the AWS checks need: the SDK configuration the agent loads,
// its clients, and where the agent writes.
type AWS struct {
	Config    aws.Config
	S3        *s3.Client
	DynamoDB  *dynamodb.Client
	STS       *sts.Client
	Bucket    string
	Table     string
	KeyPrefix string
	// CustomEndpoint is set when an AWS_ENDPOINT_URL* points the SDK away
	// from AWS (the local stack, another S3): its STS may not answer
	// GetCallerIdentity (MinIO answers 400 InvalidParameterValue
	// "Unsupported action GetCallerIdentity"), which is then a skip.
	CustomEndpoint bool
	// Archive, when set, is searched for a file the agent has offloaded,
	// whose key tells whether s3:GetObject is granted (see checkGetObject).
	Archive string
}

// ProbeFolder is the dot-folder under the key prefix that doctor's S3 and
// DynamoDB probes name: the agent never uploads a dot-folder (the scan
// skips them), so no original can have a key under it.
const ProbeFolder = ".offload-doctor/"

func probeName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Identity is who the credentials are, as far as can be told.
type Identity struct {
	// ARN and Account, from sts:GetCallerIdentity when it answered.
	ARN, Account string
	// KeyTail is the access key id's last 4 characters; Source is the
	// credential provider's name (EnvConfigCredentials, SharedConfigCredentials,
	// EC2RoleProvider...).
	KeyTail, Source string
}

func (id Identity) String() string {
	s := fmt.Sprintf("access key …%s from %s", id.KeyTail, id.Source)
	if id.ARN != "" {
		s = id.ARN + " (" + s + ")"
	}
	return s
}

// WhoAmI resolves the credentials through the SDK chain, then asks STS who
// they are. GetCallerIdentity needs no permission: "No permissions are
// required to perform this operation ... the same information is returned
// when access is denied"
// (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).
// So on AWS its only failures are credentials refused (InvalidClientTokenId,
// SignatureDoesNotMatch, ExpiredToken: the common errors,
// https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html)
// and no answer. credErr is the resolution's failure; stsErr GetCallerIdentity's.
func WhoAmI(ctx context.Context, cfg aws.Config, client *sts.Client) (id Identity, credErr, stsErr error) {
	if cfg.Credentials == nil {
		return id, errors.New("no credential provider configured"), nil
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return id, err, nil
	}
	id.Source = creds.Source
	if k := creds.AccessKeyID; len(k) >= 4 {
		id.KeyTail = k[len(k)-4:]
	}
	out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return id, nil, err
	}
	id.ARN, id.Account = aws.ToString(out.Arn), aws.ToString(out.Account)
	return id, nil, nil
}

// CredentialsFix says how to give the agent credentials.
const CredentialsFix = "give the agent credentials: an instance profile with the stack's AgentPolicyArn, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) in /etc/offload/agent.env (mode 0640 root:offload), or a credential_process profile (AWS_PROFILE, AWS_CONFIG_FILE) the offload user can read"

// Check runs the AWS checks in order; a failure that makes the later ones
// meaningless (no credentials, no region, no bucket) turns them into skips.
func (a AWS) Check(ctx context.Context) []Result {
	var out []Result
	if a.Config.Region == "" {
		out = append(out, fail("region", "set AWS_REGION in /etc/offload/agent.env: the region in the stack's StackId", "no region: AWS_REGION is not set and the shared config names none"))
	} else {
		out = append(out, ok("region", "%s", a.Config.Region))
	}
	id, credErr, stsErr := WhoAmI(ctx, a.Config, a.STS)
	switch {
	case credErr != nil:
		out = append(out, fail("credentials", CredentialsFix, "the SDK's credential chain found none: %v", credErr),
			skip("identity", "no credentials"), skip("s3", "no credentials"), skip("dynamodb", "no credentials"))
		return out
	default:
		out = append(out, ok("credentials", "access key …%s from %s", id.KeyTail, id.Source))
	}
	credsRefused := false
	switch {
	case stsErr == nil:
		out = append(out, ok("identity", "%s (account %s)", id.ARN, id.Account))
	case agent.CredentialsRefused(stsErr):
		credsRefused = true
		out = append(out, fail("identity", CredentialsFix+"; check the key is active and the clock is right", "STS refused the credentials: %v", stsErr))
	case a.CustomEndpoint:
		out = append(out, skip("identity", "custom endpoint (AWS_ENDPOINT_URL*) did not answer sts:GetCallerIdentity: %v", stsErr))
	case agent.Unanswered(stsErr):
		out = append(out, fail("identity", "let the host reach sts.REGION.amazonaws.com and the S3 and DynamoDB endpoints over HTTPS (proxy, firewall, DNS)", "AWS STS could not be reached: %v", stsErr))
	default:
		out = append(out, fail("identity", CredentialsFix, "sts:GetCallerIdentity: %v", stsErr))
	}
	if credsRefused {
		return append(out, skip("s3", "credentials refused"), skip("dynamodb", "credentials refused"))
	}
	out = append(out, a.checkS3(ctx)...)
	return append(out, a.checkDynamoDB(ctx)...)
}

// errCode is the error code of the service's answer, "" for none.
func errCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

func status(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func grantFix(action, resource string) string {
	return fmt.Sprintf("attach the stack's AgentPolicyArn to the agent's role or user (it grants %s on %s); if it is attached, deploy the current template.yaml", action, resource)
}

// denied reports whether err is an authorization refusal: S3's AccessDenied
// (403, https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList),
// DynamoDB's AccessDeniedException (400,
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html#Programming.Errors.MessagesAndCodes).
func denied(err error) bool {
	c := errCode(err)
	return c == "AccessDenied" || c == "AccessDeniedException"
}

// checkS3 exercises each of the agent's S3 grants (template.yaml,
// AgentPolicy) with calls that leave nothing behind.
func (a AWS) checkS3(ctx context.Context) []Result {
	bucketARN := "arn:aws:s3:::" + a.Bucket
	objects := bucketARN + "/" + a.KeyPrefix + "*"
	var out []Result
	bucketDenied := false

	// The bucket, and s3:ListBucketMultipartUploads (the orphan sweep's
	// ListMultipartUploads, "you must have the s3:ListBucketMultipartUploads
	// permission": https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListMultipartUploads.html).
	// A missing bucket is NoSuchBucket (404) whatever the grants.
	_, err := a.S3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(a.Bucket),
		Prefix: aws.String(a.KeyPrefix), MaxUploads: aws.Int32(1)})
	switch {
	case errCode(err) == "NoSuchBucket":
		return append(out, fail("s3-bucket", "set OFFLOAD_BUCKET to the stack's BucketName output (and AWS_REGION to the stack's region)", "bucket %q does not exist: %v", a.Bucket, err),
			skip("s3-grants", "no bucket"))
	case errCode(err) == "PermanentRedirect" || errCode(err) == "AuthorizationHeaderMalformed":
		return append(out, fail("s3-bucket", "set AWS_REGION to the bucket's region (the stack's)", "bucket %q is in another region: %v", a.Bucket, err),
			skip("s3-grants", "wrong region"))
	case agent.CredentialsRefused(err):
		return append(out, fail("s3-bucket", CredentialsFix, "S3 refused the credentials: %v", err), skip("s3-grants", "credentials refused"))
	case agent.Unanswered(err):
		return append(out, fail("s3-bucket", "let the host reach the S3 endpoint over HTTPS (proxy, firewall, DNS)", "S3 could not be reached: %v", err), skip("s3-grants", "S3 unreachable"))
	case denied(err):
		bucketDenied = true
		out = append(out, skip("s3-bucket", "cannot tell whether %q exists: ListMultipartUploads was refused", a.Bucket),
			fail("s3:ListBucketMultipartUploads", grantFix("s3:ListBucketMultipartUploads", bucketARN), "refused on %s: %v", bucketARN, err))
	case err != nil:
		out = append(out, fail("s3-bucket", "see the error", "ListMultipartUploads on %q: %v", a.Bucket, err))
	default:
		out = append(out, ok("s3-bucket", "%s exists", a.Bucket), ok("s3:ListBucketMultipartUploads", "ListMultipartUploads under %q", a.KeyPrefix))
	}

	// s3:PutObject: CreateMultipartUpload needs it ("You must be allowed to
	// perform the s3:PutObject action on an object to create multipart
	// upload": https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateMultipartUpload.html).
	// An upload without parts is no object; it is aborted below, and were
	// that refused, the agent's own orphan sweep aborts it later.
	key := a.KeyPrefix + ProbeFolder + probeName()
	up, err := a.S3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(a.Bucket), Key: aws.String(key)})
	if err != nil {
		fix := grantFix("s3:PutObject", objects)
		if !denied(err) {
			fix = "see the error"
		}
		out = append(out, fail("s3:PutObject", fix, "CreateMultipartUpload of %s: %v", key, err),
			skip("s3:ListMultipartUploadParts", "no upload to list"), skip("s3:AbortMultipartUpload", "no upload to abort"))
	} else {
		out = append(out, ok("s3:PutObject", "CreateMultipartUpload of %s", key))
		// s3:ListMultipartUploadParts: ListParts, with which the agent
		// resumes an interrupted upload
		// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListParts.html).
		if _, err := a.S3.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(a.Bucket), Key: aws.String(key), UploadId: up.UploadId}); err != nil {
			out = append(out, fail("s3:ListMultipartUploadParts", grantFix("s3:ListMultipartUploadParts", objects), "ListParts of the probe upload: %v", err))
		} else {
			out = append(out, ok("s3:ListMultipartUploadParts", "ListParts of the probe upload"))
		}
		// s3:AbortMultipartUpload
		// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_AbortMultipartUpload.html).
		if _, err := a.S3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(a.Bucket), Key: aws.String(key), UploadId: up.UploadId}); err != nil {
			out = append(out, fail("s3:AbortMultipartUpload", grantFix("s3:AbortMultipartUpload", objects),
				"AbortMultipartUpload of the probe upload %s (left in the bucket; a bucket lifecycle rule or an agent with the grant removes it): %v", key, err))
		} else {
			out = append(out, ok("s3:AbortMultipartUpload", "the probe upload aborted, nothing left"))
		}
	}
	out = append(out, a.checkGetObject(ctx, objects))
	if bucketDenied && everyS3CallDenied(out) {
		// Refused on the bucket and on every key alike: the agent's
		// policy names another bucket (or none is attached). MinIO
		// answers so for a bucket its policy does not name, before it
		// looks whether the bucket exists; so does AWS for a bucket that
		// exists in another account.
		return []Result{fail("s3-bucket", "set OFFLOAD_BUCKET to the stack's BucketName output, and attach the stack's AgentPolicyArn to the agent's role or user",
			"every call on bucket %q was refused (AccessDenied): it is not the bucket the agent's policy grants, or no policy is attached", a.Bucket),
			skip("s3-grants", "bucket refused")}
	}
	return out
}

// everyS3CallDenied reports whether each S3 grant check failed or could
// not tell.
func everyS3CallDenied(out []Result) bool {
	for _, r := range out {
		if strings.HasPrefix(r.Name, "s3:") && r.Status != Fail && r.Status != Skip {
			return false
		}
	}
	return true
}

// checkGetObject tells whether s3:GetObject (the agent's HeadObject) is
// granted. A HEAD of a missing key does not tell on AWS: "If you don't have
// the s3:ListBucket permission, Amazon S3 returns an HTTP status code 403
// Forbidden error" (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html),
// and the agent has no s3:ListBucket; a 404 does tell (some endpoints,
// MinIO among them, answer 404 to whoever may read). So the HEAD goes first
// to the key of a file the archive holds, which the agent offloaded: 200
// proves the grant, 403 its absence.
func (a AWS) checkGetObject(ctx context.Context, objects string) Result {
	const name = "s3:GetObject"
	key, known := a.archivedKey()
	if !known {
		key = a.KeyPrefix + ProbeFolder + probeName()
	}
	_, err := a.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(a.Bucket), Key: aws.String(key)})
	switch st := status(err); {
	case err == nil:
		return ok(name, "HeadObject of %s (an archived file's key)", key)
	case known && st == http.StatusForbidden:
		return fail(name, grantFix(name, objects), "HeadObject of %s, an archived file's key: 403", key)
	case known && st == http.StatusNotFound:
		return Result{Status: Warn, Name: name, Detail: fmt.Sprintf("granted, but %s, an archived file's key, is not in the bucket (another bucket or key prefix before?)", key)}
	case !known && st == http.StatusNotFound:
		return ok(name, "HeadObject of a missing key answered 404, which only a caller allowed to read gets")
	case !known && st == http.StatusForbidden:
		return skip(name, "cannot tell: nothing archived yet to look up, and AWS answers 403 for a missing key to a caller without s3:ListBucket, granted or not")
	default:
		return fail(name, "see the error", "HeadObject of %s: %v", key, err)
	}
}

// checkDynamoDB proves the table and the agent's two ledger grants with
// calls that write nothing. A GetItem of a key no original has (under the
// probe dot-folder) needs dynamodb:GetItem and the table
// (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_GetItem.html:
// ResourceNotFoundException when it does not exist). A PutItem whose
// condition can never hold (attribute_exists and attribute_not_exists of
// the key at once) is refused with ConditionalCheckFailedException, "the
// condition ... evaluated to false", and writes nothing
// (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_PutItem.html);
// it gets that far only when dynamodb:PutItem is granted: without the grant
// it is AccessDeniedException.
func (a AWS) checkDynamoDB(ctx context.Context) []Result {
	tableFix := "set OFFLOAD_TABLE to the stack's TableName output (and AWS_REGION to the stack's region)"
	pk := a.KeyPrefix + ProbeFolder + probeName()
	keyAttr := map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: pk}}
	var out []Result
	_, err := a.DynamoDB.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(a.Table), Key: keyAttr})
	switch {
	case err == nil:
		out = append(out, ok("dynamodb-table", "%s exists", a.Table), ok("dynamodb:GetItem", "GetItem of a key no original has"))
	case errCode(err) == "ResourceNotFoundException":
		return append(out, fail("dynamodb-table", tableFix, "table %q does not exist: %v", a.Table, err), skip("dynamodb-grants", "no table"))
	case agent.CredentialsRefused(err):
		return append(out, fail("dynamodb-table", CredentialsFix, "DynamoDB refused the credentials: %v", err), skip("dynamodb-grants", "credentials refused"))
	case agent.Unanswered(err):
		return append(out, fail("dynamodb-table", "let the host reach the DynamoDB endpoint over HTTPS (proxy, firewall, DNS)", "DynamoDB could not be reached: %v", err), skip("dynamodb-grants", "DynamoDB unreachable"))
	case denied(err):
		out = append(out, skip("dynamodb-table", "cannot tell whether %q exists: GetItem was refused", a.Table),
			fail("dynamodb:GetItem", grantFix("dynamodb:GetItem", "the ledger table"), "GetItem: %v", err))
	default:
		out = append(out, fail("dynamodb-table", "see the error", "GetItem on %q: %v", a.Table, err))
	}
	_, err = a.DynamoDB.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(a.Table),
		Item:                     keyAttr,
		ConditionExpression:      aws.String("attribute_exists(#pk) AND attribute_not_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{"#pk": offload.LedgerPartitionKey},
	})
	var ccf *dbtypes.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		out = append(out, ok("dynamodb:PutItem", "a PutItem whose condition never holds was refused by its condition, nothing written"))
	case err == nil:
		out = append(out, fail("dynamodb:PutItem", "report this: the table wrote an item under an impossible condition",
			"PutItem under a condition that never holds succeeded: item %q written", pk))
	case denied(err):
		out = append(out, fail("dynamodb:PutItem", grantFix("dynamodb:PutItem", "the ledger table"), "PutItem: %v", err))
	default:
		out = append(out, fail("dynamodb:PutItem", "see the error", "PutItem: %v", err))
	}
	return out
}

// archiveWalkLimit bounds the search of the archive for an offloaded file:
// doctor answers in a second even on an archive of millions of files.
const archiveWalkLimit = 10000

// archivedKey returns the object key of a file the archive holds, which the
// agent moved there only after S3 and the ledger held it.
func (a AWS) archivedKey() (string, bool) {
	if a.Archive == "" {
		return "", false
	}
	m := offload.Mapping{URLPrefix: offload.DefaultMapping.URLPrefix, KeyPrefix: a.KeyPrefix}
	var key string
	seen := 0
	errFound := errors.New("found")
	_ = filepath.WalkDir(a.Archive, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if seen++; seen > archiveWalkLimit {
			return filepath.SkipAll
		}
		if strings.HasPrefix(d.Name(), ".") && path != a.Archive {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(a.Archive, path)
		if err != nil {
			return nil
		}
		if k, err := m.KeyForFile(filepath.ToSlash(rel)); err == nil {
			key = k
			return errFound
		}
		return nil
	})
	return key, key != ""
}

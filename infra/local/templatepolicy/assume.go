package templatepolicy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// Assume returns temporary credentials from the STS at endpoint (MinIO's,
// which serves STS at its S3 endpoint) whose session policy is doc: signed
// with the root user's cfg, they may do what doc allows and nothing else,
// as AWS does for the intersection of a role's and a session's policies
// (the root user's own is everything). component names the session. doc
// is written as AWS reads it; MinIO gets it in its own terms (ForMinIO).
func Assume(ctx context.Context, cfg aws.Config, endpoint, component string, doc Document, life time.Duration) (aws.Credentials, error) {
	client := sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = aws.String(endpoint) })
	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String("arn:aws:iam::000000000000:role/offload-" + component), // MinIO ignores it for the root user
		RoleSessionName: aws.String("offload-" + component),
		Policy:          aws.String(doc.ForMinIO().JSON()),
		DurationSeconds: aws.Int32(int32(life / time.Second)),
	}
	out, err := client.AssumeRole(ctx, in)
	// MinIO serves S3 calls a moment before its IAM subsystem has loaded
	// and answers STS meanwhile with 400 InvalidParameterValue "Server not
	// initialized, please try again": ask again until ctx ends.
	for err != nil && iamNotReady(err) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
		out, err = client.AssumeRole(ctx, in)
	}
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("credentials for the %s: %w", component, err)
	}
	c := out.Credentials
	return aws.Credentials{AccessKeyID: aws.ToString(c.AccessKeyId), SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken: aws.ToString(c.SessionToken)}, nil
}

// iamNotReady reports whether err is MinIO's answer while its IAM
// subsystem is still loading.
func iamNotReady(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "InvalidParameterValue" &&
		strings.Contains(api.ErrorMessage(), "not initialized")
}

// ForMinIO returns the document as MinIO must be told it to enforce what
// AWS enforces for d. AWS authorizes a DeleteObject that names a version
// as s3:DeleteObjectVersion ("Actions defined by Amazon S3",
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html);
// MinIO authorizes it as s3:DeleteObject and checks s3:DeleteObjectVersion
// only for an explicit Deny (authorizeRequest, cmd/auth-handler.go, in the
// MinIO the stack installs). So every Allow of s3:DeleteObjectVersion also
// allows s3:DeleteObject here. The cost: on MinIO such a caller may also
// delete without a version id (adding a delete marker), which AWS would
// refuse; the eraser, the one component granted it, never sends that
// call (template_calls_test.go reads every DeleteObject it makes).
func (d Document) ForMinIO() Document {
	out := Document{Version: d.Version}
	for _, s := range d.Statement {
		if s.Effect == "Allow" && slices.Contains(s.Action, "s3:DeleteObjectVersion") && !slices.Contains(s.Action, "s3:DeleteObject") {
			s.Action = append(slices.Clone(s.Action), "s3:DeleteObject")
		}
		out.Statement = append(out.Statement, s)
	}
	return out
}

package templatepolicy

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Assume returns temporary credentials from the STS at endpoint (MinIO's,
// which serves STS at its S3 endpoint) whose session policy is doc: signed
// with the root user's cfg, they may do what doc allows and nothing else,
// as AWS does for the intersection of a role's and a session's policies
// (the root user's own is everything). component names the session.
func Assume(ctx context.Context, cfg aws.Config, endpoint, component string, doc Document, life time.Duration) (aws.Credentials, error) {
	client := sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = aws.String(endpoint) })
	out, err := client.AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn:         aws.String("arn:aws:iam::000000000000:role/offload-" + component), // MinIO ignores it for the root user
		RoleSessionName: aws.String("offload-" + component),
		Policy:          aws.String(doc.JSON()),
		DurationSeconds: aws.Int32(int32(life / time.Second)),
	})
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("credentials for the %s: %w", component, err)
	}
	c := out.Credentials
	return aws.Credentials{AccessKeyID: aws.ToString(c.AccessKeyId), SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken: aws.ToString(c.SessionToken)}, nil
}

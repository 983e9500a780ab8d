package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/agent/doctor"
)

// exitAWSStart is the exit status when, at start, the credentials do not
// resolve, AWS refuses them, or (once only) AWS cannot be reached at all:
// systemd restarts the agent (only 2 is in RestartPreventExitStatus=).
const exitAWSStart = 4

// startCheckTimeout bounds the start-up check: two calls, each tried at
// most twice with a 5 s dial timeout.
const startCheckTimeout = 30 * time.Second

// startCheck logs who the agent's credentials are and returns
// exitAWSStart when the agent cannot work at all: the credentials do not
// resolve or are refused (blame.go's judgement, agent.CredentialsRefused),
// or, for once, AWS does not answer. For run, no answer at start is an
// outage like any later one: it is logged and the agent carries on, as the
// circuit breaker and /readyz handle outages, and an exit here would turn a
// network outage into a restart loop (infra/soak counts exits as crashes).
// It returns 0 to go on.
//
// Who: sts:GetCallerIdentity, which needs no permission
// (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).
// Where it does not answer (an S3 endpoint of another kind, MinIO's STS;
// a host whose network reaches S3 through a VPC endpoint but not STS), the
// access key's last 4 characters and the credential source, and a
// ListMultipartUploads under the key prefix (a call the agent's orphan
// sweep makes anyway, granted by the template) tells whether the
// credentials are refused or AWS unreachable.
func startCheck(ctx context.Context, log *slog.Logger, mode, bucket, keyPrefix string, pathStyle bool) int {
	ctx, cancel := context.WithTimeout(ctx, startCheckTimeout)
	defer cancel()
	cfg, err := loadAWSConfig(ctx)
	if err != nil {
		return 0 // awsClients says it, as a configuration error
	}
	id, credErr, stsErr := doctor.WhoAmI(ctx, cfg, stsClient(cfg, os.Getenv))
	switch {
	case credErr != nil:
		log.Error("no AWS credentials: the SDK's credential chain found none; "+doctor.CredentialsFix+" (offload-agent doctor checks them)", "err", credErr)
		return exitAWSStart
	case stsErr == nil:
		log.Info("AWS identity", "arn", id.ARN, "account", id.Account, "access_key", "…"+id.KeyTail, "source", id.Source)
		return 0
	case agent.CredentialsRefused(stsErr):
		log.Error("AWS refused the credentials: "+doctor.CredentialsFix+"; check the key is active and the clock is right (offload-agent doctor checks them)",
			"access_key", "…"+id.KeyTail, "source", id.Source, "err", stsErr)
		return exitAWSStart
	}
	log.Info("AWS identity", "access_key", "…"+id.KeyTail, "source", id.Source, "sts", stsErr)
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle })
	_, err = s3c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(keyPrefix), MaxUploads: aws.Int32(1)})
	switch {
	case agent.CredentialsRefused(err):
		log.Error("S3 refused the credentials: "+doctor.CredentialsFix+"; check the key is active and the clock is right (offload-agent doctor checks them)",
			"access_key", "…"+id.KeyTail, "source", id.Source, "err", err)
		return exitAWSStart
	case agent.Unanswered(err) && mode == "once":
		log.Error("AWS cannot be reached: neither STS nor S3 answered (network, proxy, DNS, endpoint)", "sts", stsErr, "s3", err)
		return exitAWSStart
	case agent.Unanswered(err):
		log.Error("AWS cannot be reached at start: neither STS nor S3 answered; carrying on, the agent retries as in any outage (/readyz says 503 meanwhile)", "sts", stsErr, "s3", err)
	}
	return 0
}

package agent

import (
	"context"
	"errors"
	"net"
	"os"

	"github.com/aws/smithy-go"
	"golang.org/x/sys/unix"
)

// What doctor and the start of run and once need from the agent's own
// judgement of failures (blame.go) and of the watch folder (leases.go,
// local.go), so that they agree with what the agent does later.

// credentialRefusals are the codes of serviceWide (blame.go) that refuse
// the request's credentials themselves, rather than name a missing bucket
// or table or a wrong region: the access key or token unknown, expired or
// malformed, the signature not matching (a wrong secret key), or the clock
// too far off for any signature to hold. S3:
// https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList;
// DynamoDB and STS, the errors common to every AWS API:
// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/CommonErrors.html,
// https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html.
var credentialRefusals = map[string]bool{
	"InvalidAccessKeyId": true, "SignatureDoesNotMatch": true, "ExpiredToken": true, "InvalidToken": true,
	"TokenRefreshRequired": true, "RequestTimeTooSkewed": true, "AuthorizationHeaderMalformed": true,
	"UnrecognizedClientException": true, "MissingAuthenticationTokenException": true, "IncompleteSignatureException": true,
	"InvalidSignatureException": true, "ExpiredTokenException": true, "InvalidClientTokenId": true,
	"RequestExpired": true,
}

// CredentialsRefused reports whether err, from an AWS call, is the service
// refusing the credentials the call was signed with: every call the agent
// makes would be refused alike until they are put right.
func CredentialsRefused(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && credentialRefusals[api.ErrorCode()]
}

// Unanswered reports whether err, from an AWS call, carries no answer from
// the service at all: the connection refused or cut, DNS, a timeout. The
// agent's breaker treats it as an outage (fileFault is false); at start it
// is what tells "AWS cannot be reached" from "AWS said no".
func Unanswered(err error) bool {
	if err == nil {
		return false
	}
	var answered interface{ HTTPStatusCode() int }
	if errors.As(err, &answered) && answered.HTTPStatusCode() != 0 {
		return false
	}
	var netErr net.Error
	var dnsErr *net.DNSError
	var opErr *net.OpError
	return errors.As(err, &netErr) || errors.As(err, &dnsErr) || errors.As(err, &opErr) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}

// SharedFS reports whether the file system whose statfs f_type is fsType is
// one the agent takes for shared between hosts (network or cluster), on
// which it uses no leases.
func SharedFS(fsType int64) bool { return sharedFS(fsType) }

// LeaseProbe takes a read lease on the open file f and drops it: the
// kernel's answer to whether this process may lease that file (fcntl(2),
// F_SETLEASE: EACCES without CAP_LEASE on another user's file, EINVAL where
// the file system or the system has no leases).
func LeaseProbe(f *os.File) error {
	if err := setLease(int(f.Fd()), unix.F_RDLCK); err != nil {
		return err
	}
	return setLease(int(f.Fd()), unix.F_UNLCK)
}

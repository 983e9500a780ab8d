package agent

import (
	"errors"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
)

// Whose fault a failed S3 or DynamoDB request is decides what the failure
// may stop. The service failing (unreachable, timing out, overloaded,
// throttling, refusing the agent's credentials) fails every file alike:
// that is what the circuit breaker is for, and what the end of an outage
// ends. The service refusing one request for what it names or carries (a
// key a bucket policy or a KMS key policy denies, a key too long, an
// invalid item) is that file's failure: the file retries on its own
// backoff, and every other file goes on.
//
// The answers are told apart by the error code the SDK decoded (smithy's
// APIError) and the HTTP status, never by the message:
//   - no answer at all (connection refused or cut, a timeout, DNS): the
//     service;
//   - 5xx: the service. S3's InternalError (500), ServiceUnavailable and
//     SlowDown (503), DynamoDB's InternalServerError (500) and
//     ServiceUnavailable (503): "retry the request"
//     (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList,
//     https://docs.aws.amazon.com/AmazonS3/latest/userguide/ErrorBestPractices.html,
//     https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html#Programming.Errors.MessagesAndCodes);
//   - throttling and timeouts, whatever their status: the service. S3
//     answers SlowDown with 503 and RequestTimeout with 400; DynamoDB
//     answers ProvisionedThroughputExceededException, ThrottlingException
//     and RequestLimitExceeded with 400, "OK to retry? Yes" (same pages).
//     The codes are the SDK's own lists (retry.DefaultThrottleErrorCodes,
//     retry.DefaultRetryableErrorCodes), so the SDK and the breaker agree
//     on what throttling is; HTTP 408 and 429 likewise;
//   - a 4xx that refuses every request alike (serviceWide): the service;
//   - any other 4xx: this file. Among them S3's AccessDenied (403) on the
//     key, KeyTooLongError (400, "Your key is too long", over 1,024
//     bytes), EntityTooLarge, InvalidArgument, BadDigest, NoSuchUpload,
//     and DynamoDB's ValidationException (an item over 400 KB, a key too
//     long) and AccessDeniedException (400): an IAM condition on
//     dynamodb:LeadingKeys refuses some keys and not others.

// serviceWide are the 4xx error codes that say nothing about the file: every
// request the agent makes gets the same answer until the credentials, the
// clock, the region or the bucket or table is put right. S3
// (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList):
// the access key or token is unknown or expired, the signature does not
// match, the clock is over 15 minutes off, the account or the bucket is
// disabled or gone, the request went to the wrong region. DynamoDB
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html#Programming.Errors.MessagesAndCodes
// and the common errors,
// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/CommonErrors.html):
// the same for credentials and signatures, and ResourceNotFoundException
// (the table does not exist).
var serviceWide = map[string]bool{
	// S3
	"InvalidAccessKeyId": true, "SignatureDoesNotMatch": true, "ExpiredToken": true, "InvalidToken": true,
	"TokenRefreshRequired": true, "RequestTimeTooSkewed": true, "AccountProblem": true, "AllAccessDisabled": true,
	"NoSuchBucket": true, "PermanentRedirect": true, "AuthorizationHeaderMalformed": true,
	// DynamoDB and the errors common to AWS services
	"UnrecognizedClientException": true, "MissingAuthenticationTokenException": true, "IncompleteSignatureException": true,
	"InvalidSignatureException": true, "ExpiredTokenException": true, "InvalidClientTokenId": true,
	"RequestExpired": true, "ResourceNotFoundException": true,
}

// bareBadRequest is the code the SDK gives an answer that names none: the
// status text of a 400 whose body is empty. That is every error of a HEAD,
// which "returns a generic code, such as 400 Bad Request ... It's not
// possible to retrieve the exact exception"
// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html).
// A HEAD's 400 about the key itself (too long) cannot happen, as the
// mapping refuses such keys; what is left is the request's credentials
// or signature (ExpiredToken, AuthorizationHeaderMalformed: 400 with a body
// on other requests), which fail every file alike. Taken for the file's,
// an expired token never opened the breaker while only files larger than
// a part (which start with a HEAD) waited.
const bareBadRequest = "BadRequest"

// fileFault reports whether err, from a failed S3 or DynamoDB request, is
// the file's own failure rather than the service's (see above). An error
// without an answer from the service is the service's.
func fileFault(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) {
		code := api.ErrorCode()
		if _, ok := retry.DefaultThrottleErrorCodes[code]; ok {
			return false
		}
		if _, ok := retry.DefaultRetryableErrorCodes[code]; ok {
			return false
		}
		if serviceWide[code] || code == bareBadRequest {
			return false
		}
	}
	var answered interface{ HTTPStatusCode() int }
	if !errors.As(err, &answered) {
		return false
	}
	status := answered.HTTPStatusCode()
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

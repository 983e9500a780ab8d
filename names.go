package offload

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// CheckBucketName refuses a name S3 would refuse for a general purpose
// bucket, with one sentence that says which rule it breaks (the caller adds
// the name), so a typo in a
// setting is caught at start rather than as a NoSuchBucket or an
// InvalidBucketName on the first upload. The rules, from
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html:
// 3 to 63 characters; lowercase letters, digits, dots and hyphens only;
// begin and end with a letter or digit; no two adjacent periods; not an IP
// address; not the reserved prefixes xn--, sthree- and amzn-s3-demo-; not the
// reserved suffixes -s3alias (access point aliases), --ol-s3 (Object Lambda
// access point aliases), .mrap (Multi-Region Access Points) and --table-s3
// (table buckets).
//
// A directory bucket (S3 Express One Zone, name ending in --x-s3; see
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/directory-bucket-naming-rules.html)
// is refused too: the template makes a general purpose bucket, the agent's
// and the resolver's grants are s3: actions, not the s3express:CreateSession
// a directory bucket needs, and nothing here is tested against one.
//
// Rules that only AWS can check (that the name is unique, that the bucket
// exists) are doctor's.
func CheckBucketName(name string) error {
	if len(name) < 3 || len(name) > 63 {
		return fmt.Errorf("%d characters; a bucket name has 3 to 63", len(name))
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return fmt.Errorf("%q is not allowed in a bucket name: lowercase letters, digits, dots and hyphens only", c)
		}
	}
	if !alnum(name[0]) || !alnum(name[len(name)-1]) {
		return errors.New("a bucket name must begin and end with a lowercase letter or digit")
	}
	if strings.Contains(name, "..") {
		return errors.New("two adjacent periods in a bucket name")
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return errors.New("a bucket name must not be formatted as an IP address")
	}
	if strings.HasSuffix(name, "--x-s3") {
		return errors.New("a directory bucket name (S3 Express One Zone, --x-s3): offload needs a general purpose bucket")
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("the bucket name prefix %s is reserved by S3", p)
		}
	}
	for _, s := range []string{"-s3alias", "--ol-s3", ".mrap", "--table-s3"} {
		if strings.HasSuffix(name, s) {
			return fmt.Errorf("the bucket name suffix %s is reserved by S3", s)
		}
	}
	return nil
}

// CheckTableName refuses a name DynamoDB would refuse for a table: 3 to 255
// characters of a-z, A-Z, 0-9, underscore, hyphen and dot
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html).
// A table's ARN is accepted wherever a name is, but the ledger's setting is
// a name: the template's TableName output.
func CheckTableName(name string) error {
	if len(name) < 3 || len(name) > 255 {
		return fmt.Errorf("%d characters; a table name has 3 to 255", len(name))
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%q is not allowed in a table name: letters, digits, _, - and . only", c)
		}
	}
	return nil
}

// CheckDistributionID refuses what is not a CloudFront distribution ID:
// an E followed by capital letters and digits, as the template's
// CdnDistributionId output gives it (EDFDVBD6EXAMPLE, the form of
// CloudFront's examples,
// https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_GetDistribution.html).
// Nothing else, so a value cannot carry a path or a new line into a
// request or an env file.
func CheckDistributionID(id string) error {
	if len(id) < 2 || len(id) > 64 || id[0] != 'E' {
		return fmt.Errorf("%q is not a CloudFront distribution ID (the CdnDistributionId output, like EDFDVBD6EXAMPLE)", id)
	}
	for i := 1; i < len(id); i++ {
		if c := id[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return fmt.Errorf("%q is not a CloudFront distribution ID: capital letters and digits after the E", id)
		}
	}
	return nil
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
